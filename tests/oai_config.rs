//! An unusable `[oai]` section stops `sheaf config check` and the server
//! with a message naming what is wrong; the shipped example crosswalk
//! passes the check.

use std::path::Path;
use std::process::{Command, Output};

fn sheaf(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sheaf"))
        .args(args)
        .current_dir(dir)
        .env_remove("SHEAF_DATABASE_URL")
        .env_remove("SHEAF_LISTEN")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run sheaf")
}

fn check_with(toml: &str, files: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::create_dir(dir.path().join("harvest-configs")).expect("mkdir");
    std::fs::write(dir.path().join("sheaf.toml"), toml).expect("write");
    for (name, body) in files {
        std::fs::write(dir.path().join(name), body).expect("write");
    }
    let o = sheaf(dir.path(), &["config", "check"]);
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn config_check_refuses_bad_oai_sections() {
    let (code, err) = check_with("[oai]\nrepository_identifier = \"localhost\"\n", &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("repository_identifier"), "{err}");

    let (code, err) = check_with(
        "[[oai.crosswalks]]\nschema = \"book\"\nstylesheet = \"bad.xsl\"\n",
        &[(
            "bad.xsl",
            r#"<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"><xsl:template match="/"><xsl:value-of select="(("/></xsl:template></xsl:stylesheet>"#,
        )],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("bad.xsl") && err.contains("does not compile"),
        "{err}"
    );

    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/oai/crosswalks/book-to-oai_dc.xsl");
    let (code, err) = check_with(
        &format!(
            "[[oai.crosswalks]]\nnamespace = \"urn:sheaf:test:book\"\nstylesheet = {:?}\n",
            example.display().to_string()
        ),
        &[],
    );
    assert_eq!(code, Some(0), "{err}");
}
