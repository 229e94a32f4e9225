//! The HTTP endpoint: `/metrics`, `/healthz`, `/ready`, `/stats` on one listener (port 9090 by
//! default, the exporter port existing scrape configurations expect; probes share it).

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Serve the endpoints at all.
    pub enabled: bool,
    /// Address to listen on (an IP literal).
    pub bind: String,
    /// Port (0 = any free port, logged at start; tests use it).
    pub port: u16,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            bind: "0.0.0.0".into(),
            port: 9090,
        }
    }
}

impl HttpConfig {
    /// The listen address; `None` when `bind` is not an IP literal (validation reports it).
    pub fn addr(&self) -> Option<SocketAddr> {
        let ip: IpAddr = self.bind.parse().ok()?;
        Some(SocketAddr::new(ip, self.port))
    }
}
