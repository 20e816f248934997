//! `type = "docker_daemon"`: placeholder (being written).
use super::{Source, SourceContext};
use logwharf_config::source::DockerDaemonConfig;
pub struct DockerDaemon {
    #[allow(dead_code)]
    config: DockerDaemonConfig,
}
impl DockerDaemon {
    pub fn new(config: DockerDaemonConfig) -> anyhow::Result<Self> {
        Ok(Self { config })
    }
}
#[async_trait::async_trait]
impl Source for DockerDaemon {
    async fn run(self: Box<Self>, ctx: SourceContext) -> anyhow::Result<()> {
        if !ctx.once {
            ctx.shutdown.wait().await;
        }
        Ok(())
    }
}
