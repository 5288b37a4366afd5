//! `gateway up`: read a faas-cli stack file, assemble each function like
//! `faas-cli build --shrinkwrap`, run `local_build`, and deploy to the local runtime (spec §2,
//! templates.md §8).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::local::{LocalImage, Runtime};
use crate::model::{FunctionDeployment, FunctionSpec, Resources};
use crate::stack;

/// One function of the stack, ready to deploy.
pub struct Planned {
    pub deployment: FunctionDeployment,
    pub image: LocalImage,
    /// The build context was assembled again (its sources changed).
    pub rebuilt: bool,
}

fn resources(r: &Option<stack::Resources>) -> Option<Resources> {
    r.as_ref().map(|r| Resources {
        memory: r.memory.clone().unwrap_or_default(),
        cpu: r.cpu.clone().unwrap_or_default(),
        ..Resources::default()
    })
}

/// Reads the stack file (`stack.yml`, then `stack.yaml` in the working folder when `file` is
/// `None`) and assembles every function (or the one named by `filter`) under
/// `<state_dir>/build/<name>`. Any error names the function and the reason.
pub fn plan(file: Option<&Path>, filter: Option<&str>, state_dir: &Path) -> Result<Vec<Planned>, String> {
    let path = match file {
        Some(f) => f.to_path_buf(),
        None => stack::find_default(Path::new(".")).ok_or("no stack.yml or stack.yaml in the working folder (use -f FILE)")?,
    };
    let env = |k: &str| std::env::var(k).ok();
    let st = stack::load(&path, &env).map_err(|e| e.to_string())?;
    let project = stack::project_dir(&path);
    if let Some(name) = filter {
        if !st.functions.contains_key(name) {
            return Err(format!("no function {name:?} in {}", path.display()));
        }
    }
    let build_root = state_dir.join("build");
    let mut out = Vec::new();
    // Every function is checked and assembled before any is deployed.
    for (name, f) in &st.functions {
        if filter.is_some_and(|n| n != name) {
            continue;
        }
        let dir: PathBuf = build_root.join(name);
        let a = stack::prepare(&project, name, f, &st, &dir).map_err(|e| e.to_string())?;
        let dir = a.dir.canonicalize().map_err(|e| format!("function {name}: {}: {e}", a.dir.display()))?;
        let image = f.image.clone().unwrap_or_else(|| format!("{name}:latest"));
        let deployment = FunctionDeployment {
            service: name.clone(),
            spec: FunctionSpec {
                image: image.clone(),
                namespace: f.namespace.clone().unwrap_or_default(),
                env_process: a.fprocess.clone(),
                env_vars: f.environment.clone(),
                constraints: f.constraints.clone(),
                secrets: f.secrets.clone(),
                labels: f.labels.clone(),
                annotations: f.annotations.clone(),
                limits: resources(&f.limits),
                requests: resources(&f.requests),
                read_only_root_filesystem: f.readonly_root_filesystem,
            },
        };
        out.push(Planned { deployment, image: LocalImage { dir, env: a.template.env.clone(), fprocess: a.fprocess.clone() }, rebuilt: a.rebuilt });
    }
    Ok(out)
}

/// Deploys each planned function: created when new, updated when its deployment or build
/// changed, left running otherwise.
pub fn apply(rt: &Arc<Runtime>, planned: Vec<Planned>) -> Result<(), String> {
    for p in planned {
        let name = p.deployment.service.clone();
        let unchanged_image = rt.local_image(&p.deployment.spec.image).as_ref() == Some(&p.image);
        rt.register_image(&p.deployment.spec.image, p.image).map_err(|e| format!("function {name}: {e}"))?;
        let ns = rt.namespace(&p.deployment.spec.namespace).map_err(|e| format!("function {name}: {e}"))?;
        let current = rt.deployment(&name, &ns);
        let mut wanted = p.deployment.clone();
        wanted.spec.namespace = ns.clone();
        let result = match current {
            None => rt.deploy(p.deployment, true).map(|_| "Deployed"),
            Some(cur) if cur == wanted && unchanged_image && !p.rebuilt => Ok("Unchanged"),
            Some(_) => rt.deploy(p.deployment, false).map(|_| "Updated"),
        };
        match result {
            Ok(what) => watchdog::logs::info(&format!("{what}: {name}.{ns}")),
            Err(e) => return Err(format!("function {name}: {e}")),
        }
    }
    Ok(())
}
