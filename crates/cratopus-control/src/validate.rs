//! A would-be version checked by the same load and compile as `cratopus check`, against the
//! gateway.yaml the nodes run: what is refused here is what a node would refuse.

use cratopus_config::cluster::Bundle;
use std::path::Path;

/// Loads `bundle` with the gateway template and compiles it. The problems, each as
/// `file:line:column: reason` (a bundle's documents are `cluster/vN/<org>.json`).
pub fn check(gateway_path: &Path, gateway_text: &str, bundle: &Bundle) -> Result<(), Vec<String>> {
    let render = |e: cratopus_config::ConfigErrors| e.0.iter().map(ToString::to_string).collect::<Vec<_>>();
    let cfg = cratopus_config::load_with_bundle(gateway_path, gateway_text, bundle).map_err(render)?;
    let sources = cfg.sources.clone();
    // The compile has no side effects (nothing opened, resolved or started): a check only.
    match cratopus_core::compile_only(cfg, None, bundle.version, &Default::default()) {
        Ok(_) => Ok(()),
        Err(mut e) => {
            sources.place(&mut e.0);
            Err(render(e))
        }
    }
}
