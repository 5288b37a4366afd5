//! `gateway up -f stack.yml`: a stack file's functions assembled from `template/<lang>` and run on
//! the local runtime (gateway.md §2, templates.md §8), through the real binaries.

use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::*;

const T: Duration = Duration::from_secs(15);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A project folder with the repository's `template/`, the example handler and `stack.yml`.
fn project() -> PathBuf {
    let dir = temp_dir("up-project");
    copy_dir(&repo().join("template"), &dir.join("template"));
    copy_dir(&repo().join("examples/hello-bash"), &dir.join("examples/hello-bash"));
    std::fs::copy(repo().join("stack.yml"), dir.join("stack.yml")).unwrap();
    dir
}

#[test]
fn u01_up_runs_the_example_and_redeploys_changes() {
    let dir = project();
    let state = temp_dir("up-state");
    let stack = dir.join("stack.yml");
    let up = || open_gateway().env("state_dir", state.to_str().unwrap()).arg("up").arg("-f").arg(stack.to_str().unwrap());
    let mut gw = up().start();
    gw.wait_log("Deployed: hello-bash.openfaas-fn", T);
    gw.wait_available("hello-bash", 1, T);
    let r = gw.post("/function/hello-bash", b"Ada");
    assert_eq!((r.status, r.text().as_str()), (200, "Hello from bash: Ada\n"));
    let st = gw.get("/system/function/hello-bash").json();
    assert_eq!((st["image"].as_str(), st["envProcess"].as_str()), (Some("hello-bash:latest"), Some("bash ./function/handler.sh")));
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(T).unwrap().success());

    // Unchanged: left as it is. Changed handler: updated.
    let mut gw = up().start();
    gw.wait_log("Unchanged: hello-bash.openfaas-fn", T);
    gw.signal(libc::SIGTERM);
    gw.wait_exit(T);
    let handler = dir.join("examples/hello-bash/handler.sh");
    let text = std::fs::read_to_string(&handler).unwrap().replace("Hello from bash", "Hi from bash");
    std::fs::write(&handler, text).unwrap();
    let gw = up().start();
    gw.wait_log("Updated: hello-bash.openfaas-fn", T);
    assert!(eventually(T, || gw.post("/function/hello-bash", b"Bo").text() == "Hi from bash: Bo\n"), "{}", gw.log());
}

#[test]
fn u02_up_refuses_bad_stacks_before_serving() {
    let dir = project();
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let cases = [
        (write("docker.yml", "version: 1.0\nprovider: {name: openfaas}\nfunctions:\n  d: {lang: dockerfile, handler: ./examples/hello-bash, image: d}\n"),
         "function d: lang dockerfile needs a container runtime; deploy its image to a provider instead"),
        (write("lang.yml", "version: 1.0\nprovider: {name: openfaas}\nfunctions:\n  g: {lang: go, handler: ./examples/hello-bash, image: g}\n"), "go"),
        (write("provider.yml", "version: 1.0\nprovider: {name: other}\nfunctions: {}\n"), "openfaas"),
        (write("name.yml", "version: 1.0\nprovider: {name: openfaas}\nfunctions:\n  Bad_Name: {lang: bash-streaming, handler: ./examples/hello-bash}\n"), "Bad_Name"),
        (dir.join("missing.yml"), "missing.yml"),
    ];
    for (file, reason) in cases {
        let out = open_gateway().arg("up").arg("-f").arg(file.to_str().unwrap()).no_wait().run_to_exit(T);
        assert_eq!(out.code(), Some(1), "{}: {}", file.display(), out.stderr);
        assert!(out.stderr.contains(reason), "{}: {}", file.display(), out.stderr);
        assert!(!out.stderr.contains("Listening on port"), "nothing served: {}", out.stderr);
    }
}
