//! Wiring of the serving pipeline (being assembled: the Kafka stage is not in the tree yet).

use tokio_util::sync::CancellationToken;

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("the serving pipeline is not assembled in this build yet")]
    NotAssembled,
}

#[derive(Debug)]
pub struct ServeReport;

pub async fn serve(_config: Config, _cancel: CancellationToken) -> Result<ServeReport, AppError> {
    Err(AppError::NotAssembled)
}
