//! The API the teller app, the RM mobile backend and the scheduler jobs are built
//! against can't change by accident: `make lint` runs `buf breaking` against the
//! committed image `proto/api-baseline.binpb`. This proves the check bites: the
//! protos as they are pass, and a renamed field or a renumbered one fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::path::{Path, PathBuf};
use std::process::Command;

const BUF: &str = "@bufbuild/buf@1.75.0";

fn proto_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto")
}

/// A copy of proto/ with `edit` applied to `file`, and whether `buf breaking`
/// against the baseline passes there.
fn breaking_passes_after(file: &str, edit: impl Fn(String) -> String) -> (bool, String) {
    let copy = std::env::temp_dir().join(crm_testkit::unique_name("proto"));
    let status = Command::new("cp")
        .args(["-r"])
        .arg(proto_dir())
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    let path = copy.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let edited = edit(text.clone());
    std::fs::write(&path, &edited).unwrap();
    let output = Command::new("npx")
        .args(["--yes", BUF, "breaking", "--against", "api-baseline.binpb"])
        .current_dir(&copy)
        .output()
        .expect("npx (Node.js) runs buf, as `make lint` does");
    std::fs::remove_dir_all(&copy).ok();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), said)
}

#[test]
fn buf_breaking_holds_the_api_to_its_baseline() {
    let (unchanged, said) = breaking_passes_after("crm/v1/referrals.proto", |text| text);
    assert!(
        unchanged,
        "the protos as committed break the baseline:\n{said}"
    );

    let (renamed, said) = breaking_passes_after("crm/v1/referrals.proto", |text| {
        text.replacen("string idempotency_key = ", "string request_key = ", 1)
    });
    assert!(!renamed, "a renamed field passed");
    assert!(said.contains("request_key"), "{said}");

    let (renumbered, said) = breaking_passes_after("crm/v1/clients.proto", |text| {
        text.replacen("string client_id = 1;", "string client_id = 99;", 1)
    });
    assert!(!renumbered, "a renumbered field passed");
    assert!(said.contains("client_id"), "{said}");
}
