//! `type = "docker_json_file"`: tails Docker's json-file logs. (Being written.)

use super::{Source, SourceContext};
use logwharf_config::source::DockerJsonFileConfig;

pub struct DockerJsonFile {
    #[allow(dead_code)]
    config: DockerJsonFileConfig,
}

impl DockerJsonFile {
    pub fn new(config: DockerJsonFileConfig) -> anyhow::Result<Self> {
        Ok(Self { config })
    }
}

#[async_trait::async_trait]
impl Source for DockerJsonFile {
    async fn run(self: Box<Self>, ctx: SourceContext) -> anyhow::Result<()> {
        if !ctx.once {
            ctx.shutdown.wait().await;
        }
        Ok(())
    }
}
