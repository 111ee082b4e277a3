//! The binary as an operator meets it: first start, bad databases, exit codes.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

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

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// One clear line, no panic, no backtrace.
fn assert_one_clear_line(o: &Output) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.starts_with("sheaf: error: "), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[test]
fn daemon_first_start_creates_database_and_answers_health() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sheaf"))
        .args(["daemon", "--listen", &listen])
        .current_dir(dir.path())
        .env_remove("SHEAF_DATABASE_URL")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn daemon");
    let url = format!("http://{listen}/health");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        match reqwest::blocking::get(&url) {
            Ok(r) => break r.status().as_u16(),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => {
                let _ = child.kill();
                panic!("daemon never answered: {e}");
            }
        }
    };
    assert_eq!(status, 200);
    assert!(dir.path().join("data/sheaf.db").is_file());

    // SIGTERM: a clean exit, promptly.
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            assert!(s.success(), "exit status {s}");
            break;
        }
        assert!(Instant::now() < deadline, "daemon did not stop within 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn unreachable_database_is_one_line_with_password_masked() {
    let dir = tempfile::tempdir().expect("tmp");
    let o = sheaf(
        dir.path(),
        &[
            "migrate",
            "--database-url",
            "postgres://sheaf:hunter2@127.0.0.1:1/sheaf",
        ],
    );
    assert_one_clear_line(&o);
    let err = stderr(&o);
    assert!(
        err.contains("postgres://sheaf:***@127.0.0.1:1/sheaf"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn unsupported_scheme_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let o = sheaf(
        dir.path(),
        &["migrate", "--database-url", "mysql://root:pw@localhost/x"],
    );
    assert_one_clear_line(&o);
    assert!(!stderr(&o).contains(":pw@"));
}

#[test]
fn corrupt_sqlite_file_is_reported_not_overwritten() {
    let dir = tempfile::tempdir().expect("tmp");
    let garbage = vec![0x5a_u8; 8192];
    std::fs::write(dir.path().join("broken.db"), &garbage).expect("write");
    let o = sheaf(
        dir.path(),
        &["migrate", "--database-url", "sqlite:broken.db"],
    );
    assert_one_clear_line(&o);
    assert!(stderr(&o).contains("broken.db"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(dir.path().join("broken.db")).expect("read"),
        garbage
    );
}

#[test]
fn migrating_twice_is_a_no_op_and_newer_databases_are_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    for _ in 0..2 {
        let o = sheaf(dir.path(), &["migrate"]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    // Pretend a newer Sheaf applied a migration this binary does not know.
    let o = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3; c = sqlite3.connect('data/sheaf.db'); \
             c.execute(\"INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (9999, 'from the future', 1, x'00', 0)\"); c.commit()",
        )
        .current_dir(dir.path())
        .output()
        .expect("python3");
    assert!(o.status.success(), "{}", stderr(&o));
    let o = sheaf(dir.path(), &["migrate"]);
    assert_one_clear_line(&o);
    assert!(stderr(&o).contains("newer Sheaf"), "{}", stderr(&o));
}

#[test]
fn config_check_reports_bad_files() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("sheaf.toml"), "listen = 5\n").expect("write");
    let o = sheaf(dir.path(), &["config", "check"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    // TOML errors quote the offending line with a caret: several lines, by design.
    assert!(
        err.starts_with("sheaf: error: config file sheaf.toml"),
        "{err}"
    );
    assert!(err.contains("line 1, column 10"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn validate_exit_codes_follow_the_verdict() {
    let dir = tempfile::tempdir().expect("tmp");
    let good = r#"<oai_dc:dc xmlns:oai_dc="http://www.openarchives.org/OAI/2.0/oai_dc/"
        xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>A title</dc:title></oai_dc:dc>"#;
    let bad = r#"<oai_dc:dc xmlns:oai_dc="http://www.openarchives.org/OAI/2.0/oai_dc/"
        xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:nonsense>x</dc:nonsense></oai_dc:dc>"#;
    std::fs::write(dir.path().join("good.xml"), good).expect("write");
    std::fs::write(dir.path().join("bad.xml"), bad).expect("write");

    let o = sheaf(dir.path(), &["validate", "oai_dc", "good.xml"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = sheaf(dir.path(), &["validate", "oai_dc", "good.xml", "bad.xml"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let all = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert!(all.contains("bad.xml") && all.contains("nonsense"), "{all}");
    let o = sheaf(dir.path(), &["validate", "no_such_schema", "good.xml"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = sheaf(dir.path(), &["validate", "oai_dc"]);
    assert_eq!(o.status.code(), Some(2), "files are required");

    let o = sheaf(dir.path(), &["schemas", "list"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("oai_dc"));
}

#[test]
fn harvest_configs_are_checked_and_runs_listed() {
    let dir = tempfile::tempdir().expect("tmp");
    let hc = dir.path().join("harvest-configs");
    std::fs::create_dir(&hc).expect("mkdir");
    std::fs::write(
        hc.join("good.toml"),
        "base_url = \"http://127.0.0.1:9/oai\"\nmetadata_prefix = \"oai_dc\"\nschedule = \"15 2 * * *\"\n",
    )
    .expect("write");
    std::fs::write(
        hc.join("bad.toml"),
        "base_url = \"http://127.0.0.1:9/oai\"\nmetadata_prefix = \"oai_dc\"\nschedule = \"61 * * * *\"\n",
    )
    .expect("write");
    let o = sheaf(dir.path(), &["config", "check"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("bad.toml") && err.contains("schedule"),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("1 harvest source(s) valid, 1 invalid"));

    std::fs::remove_file(hc.join("bad.toml")).expect("rm");
    let o = sheaf(dir.path(), &["config", "check"]);
    assert!(o.status.success(), "{}", stderr(&o));

    let o = sheaf(dir.path(), &["harvest", "absent"]);
    assert_one_clear_line(&o);
    assert!(stderr(&o).contains("absent.toml"), "{}", stderr(&o));

    let o = sheaf(dir.path(), &["runs"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn shipped_harvest_configs_are_valid() {
    let dir = tempfile::tempdir().expect("tmp");
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/harvest-configs");
    let o = sheaf(
        dir.path(),
        &["config", "check", "--harvest-configs", shipped],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let examples = std::fs::read_dir(shipped).expect("dir").count();
    assert!(examples >= 3, "examples are shipped");
    assert!(
        out.contains(&format!("{examples} harvest source(s) valid, 0 invalid")),
        "{out}"
    );
}

/// An unusable `[oai]` section stops `sheaf config check` with a message
/// naming what is wrong; the shipped example crosswalk passes the check.
fn check_oai_config(toml: &str, files: &[(&str, &str)]) -> (Option<i32>, String) {
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
    let (code, err) = check_oai_config("[oai]\nrepository_identifier = \"localhost\"\n", &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("repository_identifier"), "{err}");

    let (code, err) = check_oai_config(
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
    let (code, err) = check_oai_config(
        &format!(
            "[[oai.crosswalks]]\nnamespace = \"urn:sheaf:test:book\"\nstylesheet = {:?}\n",
            example.display().to_string()
        ),
        &[],
    );
    assert_eq!(code, Some(0), "{err}");
}
