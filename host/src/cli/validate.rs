//! `switchyard validate FILE`: every problem of a configuration file, with its place.

use std::path::Path;
use std::process::ExitCode;

use crate::config;
use crate::plugin::{PluginRuntime, RuntimeOptions};

pub(super) fn run(file: &Path) -> anyhow::Result<ExitCode> {
    let Some((parsed, text)) = super::load_config(file) else {
        return Ok(ExitCode::FAILURE);
    };
    let runtime = PluginRuntime::new(RuntimeOptions::default())?;
    let base = parsed.plugin_base(file);
    let problems = crate::router::check(&parsed, &base, Some(&runtime));
    if !problems.is_empty() {
        eprintln!("{}", config::error(file, &text, problems));
        return Ok(ExitCode::FAILURE);
    }
    let plugins: usize = parsed
        .routes
        .iter()
        .map(|r| r.get_ref().plugins.len())
        .sum();
    println!(
        "{}: valid ({} inputs, {} outputs, {} routes, {plugins} plugins)",
        file.display(),
        parsed.inputs.len(),
        parsed.outputs.len(),
        parsed.routes.len(),
    );
    Ok(ExitCode::SUCCESS)
}
