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

/// A provider on a plain socket for the CLI: Identify, one ListRecords
/// page of two oai_dc records, and `/broken`, which always answers 500.
fn provider() -> String {
    use std::io::{Read, Write};
    const IDENTIFY: &str = "<?xml version=\"1.0\"?><OAI-PMH xmlns=\"http://www.openarchives.org/OAI/2.0/\">\
        <responseDate>2026-06-01T12:00:00Z</responseDate><request verb=\"Identify\">http://p/oai</request>\
        <Identify><repositoryName>P</repositoryName><baseURL>http://p/oai</baseURL>\
        <protocolVersion>2.0</protocolVersion><adminEmail>a@example.org</adminEmail>\
        <earliestDatestamp>2026-01-01T00:00:00Z</earliestDatestamp><deletedRecord>persistent</deletedRecord>\
        <granularity>YYYY-MM-DDThh:mm:ssZ</granularity></Identify></OAI-PMH>";
    let record = |n: u32| {
        format!(
            "<record><header><identifier>oai:p:{n}</identifier><datestamp>2026-01-0{n}T00:00:00Z</datestamp></header>\
             <metadata><oai_dc:dc xmlns:oai_dc=\"http://www.openarchives.org/OAI/2.0/oai_dc/\" \
             xmlns:dc=\"http://purl.org/dc/elements/1.1/\"><dc:title>Record {n}</dc:title>\
             <dc:identifier>https://example.org/item/{n}</dc:identifier></oai_dc:dc></metadata></record>"
        )
    };
    let list = format!(
        "<?xml version=\"1.0\"?><OAI-PMH xmlns=\"http://www.openarchives.org/OAI/2.0/\">\
         <responseDate>2026-06-01T12:00:00Z</responseDate><request verb=\"ListRecords\">http://p/oai</request>\
         <ListRecords>{}{}</ListRecords></OAI-PMH>",
        record(1),
        record(2)
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&request);
            let (status, body) = if head.starts_with("GET /broken") {
                ("500 Internal Server Error", "down".to_owned())
            } else if head.contains("verb=Identify") {
                ("200 OK", IDENTIFY.to_owned())
            } else {
                ("200 OK", list.clone())
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

#[test]
fn harvest_command_exit_codes_summary_and_runs() {
    let url = provider();
    let dir = tempfile::tempdir().expect("tmp");
    let hc = dir.path().join("harvest-configs");
    std::fs::create_dir(&hc).expect("mkdir");
    let source = |path: &str| {
        format!(
            "base_url = \"{url}{path}\"\nmetadata_prefix = \"oai_dc\"\nschedule = \"15 2 * * *\"\n\
             pacing = \"0s\"\n[retry]\nmax_attempts = 1\n"
        )
    };
    std::fs::write(hc.join("good.toml"), source("/oai")).expect("write");
    std::fs::write(hc.join("broken.toml"), source("/broken")).expect("write");
    let stdout = |o: &Output| String::from_utf8_lossy(&o.stdout).into_owned();

    let o = sheaf(dir.path(), &["harvest", "good"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("of good: succeeded"), "{out}");
    assert!(
        out.contains("seen 2  created 2  updated 0  unchanged 0  deleted 0  rejected 0"),
        "{out}"
    );
    assert!(out.contains("responseDate 2026-06-01T12:00:00Z"), "{out}");

    let o = sheaf(dir.path(), &["harvest", "good", "--full"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("seen 2  created 0  updated 0  unchanged 2"),
        "{}",
        stdout(&o)
    );

    // Bad arguments: 2, and no run is started.
    let o = sheaf(dir.path(), &["harvest", "good", "--from", "yesterday"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--from"), "{}", stderr(&o));
    let o = sheaf(
        dir.path(),
        &["harvest", "good", "--full", "--from", "2026-01-01"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    // A provider that fails: 1, with the reason and the failed run.
    let o = sheaf(dir.path(), &["harvest", "broken"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("harvest of broken failed"),
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).contains("of broken: failed"), "{}", stdout(&o));

    let o = sheaf(dir.path(), &["runs", "good"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let table = stdout(&o);
    assert_eq!(table.matches("succeeded").count(), 2, "{table}");
    assert!(!table.contains("broken"), "{table}");
    let o = sheaf(dir.path(), &["runs"]);
    assert!(stdout(&o).contains("failed"), "{}", stdout(&o));
    let o = sheaf(dir.path(), &["runs", "not a source!"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}
