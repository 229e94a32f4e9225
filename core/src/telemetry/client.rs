//! A minimal HTTP/1.1 GET for `kbatch stats` and the tests: one request per connection, no TLS,
//! no redirects — enough for kbatch's own endpoint and nothing else.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::models::ModelsView;
use super::TelemetryError;

/// `(status, body)` of `GET path` at `addr`, within `timeout`.
pub async fn get(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    get_with_headers(addr, path, &[], timeout).await
}

/// [`get`], sending `headers` (name, value) too, e.g. the API key.
pub async fn get_with_headers(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    let mut extra = String::new();
    for (name, value) in headers {
        if [name, value].iter().any(|s| s.contains(['\r', '\n'])) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("header {name:?} holds a line break"),
            ));
        }
        extra.push_str(&format!("{name}: {value}\r\n"));
    }
    let fetch = async {
        let mut s = TcpStream::connect(addr).await?;
        let req =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await?;
        parse(&raw)
    };
    tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "HTTP GET timed out"))?
}

/// `kbatch stats`: the `/stats` document of the instance at `endpoint` (`host:port`, an
/// `http://` prefix allowed), as served (`json`) or as a summary.
pub async fn stats(endpoint: &str, json: bool) -> Result<String, TelemetryError> {
    stats_with_headers(endpoint, json, &[]).await
}

/// [`stats`], sending `headers` too: the API key of an instance with `security.api_keys`.
pub async fn stats_with_headers(
    endpoint: &str,
    json: bool,
    headers: &[(&str, &str)],
) -> Result<String, TelemetryError> {
    let body = get_ok(endpoint, "/stats", headers, Duration::from_secs(10)).await?;
    if json {
        return Ok(body + "\n");
    }
    let v: serde_json::Value =
        serde_json::from_str(&body).map_err(|source| TelemetryError::NotJson {
            url: format!("{endpoint}/stats"),
            source,
        })?;
    Ok(summary(&v))
}

/// `kbatch models`: the `/models` report of the instance at `endpoint`, as served (`json`) or as
/// one line per model version.
pub async fn models_with_headers(
    endpoint: &str,
    json: bool,
    headers: &[(&str, &str)],
) -> Result<String, TelemetryError> {
    let body = get_ok(endpoint, "/models", headers, Duration::from_secs(10)).await?;
    if json {
        return Ok(body + "\n");
    }
    let view: ModelsView =
        serde_json::from_str(&body).map_err(|source| TelemetryError::NotJson {
            url: format!("{endpoint}/models"),
            source,
        })?;
    Ok(models_table(&view))
}

/// The registry's report as lines: the default model, then each version with its state.
pub fn models_table(view: &ModelsView) -> String {
    let mut out = format!("default model {}", view.default_model);
    if !view.registry_path.is_empty() {
        out += &format!(" (registry {})", view.registry_path);
    }
    out.push('\n');
    if let Some(e) = &view.sync_error {
        out += &format!("last rescan failed: {e}\n");
    }
    for m in &view.models {
        out += &format!("{}  policy {}", m.name, m.policy);
        if let Some(p) = &m.policy_problem {
            out += &format!("  ({p})");
        }
        if let Some(e) = &m.manifest_error {
            out += &format!("  (model.yaml: {e})");
        }
        out.push('\n');
        for v in &m.versions {
            out += &format!("  {:<8} {:<8}", v.version, v.state.as_str());
            if let Some(d) = &v.device {
                out += &format!(" {d:<4}");
            }
            if let Some(sig) = &v.signature {
                out += &format!(" {sig}");
            }
            if let Some(e) = &v.error {
                out += &format!(" {e}");
            }
            out.push('\n');
        }
    }
    out
}

/// `kbatch probe`: succeeds when `path` (`/healthz`, `/ready`) of the instance at `endpoint`
/// answers 200 within 3 s — a container health check in an image without curl.
pub async fn probe(endpoint: &str, path: &str) -> Result<(), TelemetryError> {
    get_ok(endpoint, path, &[], Duration::from_secs(3))
        .await
        .map(drop)
}

/// The body of `GET path` at `endpoint` (`host:port`, an `http://` prefix allowed), which must
/// answer 200.
async fn get_ok(
    endpoint: &str,
    path: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<String, TelemetryError> {
    let hostport = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let addr = tokio::net::lookup_host(hostport)
        .await
        .map_err(|source| TelemetryError::Resolve {
            endpoint: hostport.to_owned(),
            source,
        })?
        .next()
        .ok_or_else(|| TelemetryError::NoAddress(hostport.to_owned()))?;
    let url = format!("http://{addr}{path}");
    let (status, body) = get_with_headers(addr, path, headers, timeout)
        .await
        .map_err(|source| TelemetryError::Get {
            url: url.clone(),
            source,
        })?;
    if status != 200 {
        return Err(TelemetryError::Status {
            url,
            status,
            body: body.trim().to_owned(),
        });
    }
    Ok(body)
}

/// The statistics as a few human-readable lines.
pub fn summary(v: &serde_json::Value) -> String {
    let f = |p: &str| {
        v.pointer(p)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.0)
    };
    let mut out = format!(
        "requests {} (ok {}, dead letters {}) over {:.0} s: {:.1} req/s\n\
         latency ms: p50 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2}\n\
         error rate {:.4}  timeout rate {:.4}\n\
         batches {}  average size {:.2}  average wait {:.2} ms\n\
         time per OK request ms: kafka in {:.2}  queue {:.2}  inference {:.2}  reply {:.2}\n",
        f("/total_requests"),
        f("/completed_ok"),
        f("/dead_letters"),
        f("/uptime_s"),
        f("/throughput_rps"),
        f("/latency_ms/p50"),
        f("/latency_ms/p95"),
        f("/latency_ms/p99"),
        f("/latency_ms/max"),
        f("/error_rate"),
        f("/timeout_rate"),
        f("/batches"),
        f("/average_batch_size"),
        f("/average_wait_ms"),
        f("/time_breakdown/kafka_in_ms"),
        f("/time_breakdown/queue_wait_ms"),
        f("/time_breakdown/inference_ms"),
        f("/time_breakdown/reply_ms"),
    );
    if let Some(tiers) = v["priority_distribution"].as_array() {
        let parts: Vec<String> = tiers
            .iter()
            .map(|t| {
                format!(
                    "{} {} ({:.1} %)",
                    t[0].as_str().unwrap_or("?"),
                    t[1],
                    t[2].as_f64().unwrap_or(0.0) * 100.0
                )
            })
            .collect();
        out += &format!("by tier: {}\n", parts.join(", "));
    }
    if v["adaptive"].is_object() {
        out += &format!(
            "adaptive target {}  ({})\n",
            v["adaptive"]["target"], v["adaptive"]["last_reason"]
        );
    }
    if let Some(tiers) = v["intake"]["tiers"].as_array() {
        let parts: Vec<String> = tiers
            .iter()
            .map(|t| {
                let state = match (t["held"].as_bool(), t["held_for"].as_str()) {
                    (Some(true), Some(by)) => format!("held for {}", by.to_lowercase()),
                    _ if t["paused_by_backpressure"] == true => "paused (queue full)".into(),
                    _ if t["reading_for_share"] == true => "reading its share".into(),
                    _ => "reading".into(),
                };
                let lag = t["lag"].as_i64().map_or("?".into(), |l| l.to_string());
                format!(
                    "{} lag {lag}, {} in flight, {state}",
                    t["tier"].as_str().unwrap_or("?").to_lowercase(),
                    t["in_flight"]
                )
            })
            .collect();
        out += &format!("intake: {}\n", parts.join("; "));
    }
    out
}

fn parse(raw: &[u8]) -> std::io::Result<(u16, String)> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_owned());
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| bad("no header end"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status code"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body).ok_or_else(|| bad("bad chunk"))?
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

fn dechunk(mut s: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n")?;
        let n = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if n == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..n)?);
        s = rest.get(n + 2..)?;
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
