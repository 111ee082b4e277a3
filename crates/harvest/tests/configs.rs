//! The example source configs shipped in `harvest-configs/` all load, all
//! validate, and are all disabled until an operator turns them on.

use std::path::Path;

use sheaf_harvest::config::{check_dir, load_dir};

#[test]
fn shipped_example_configs_load_and_are_disabled() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../harvest-configs");
    let (sources, errors) = load_dir(&dir);
    assert!(
        errors.is_empty(),
        "{}",
        errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let ids: Vec<&str> = sources.iter().map(|s| s.id.as_str()).collect();
    for id in ["arxiv", "doaj", "dspace-demo", "zenodo"] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    for s in &sources {
        assert!(!s.enabled, "{} must ship disabled", s.id);
        assert!(s.cron().is_some(), "{} has a schedule", s.id);
    }
    assert_eq!(check_dir(&dir), (sources.len(), Vec::new()));
}

#[test]
fn example_resource_rules_find_resources_in_real_records() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let (sources, _) = load_dir(&root.join("harvest-configs"));
    let source = |id: &str| {
        sources
            .iter()
            .find(|s| s.id.as_str() == id)
            .unwrap_or_else(|| panic!("{id}"))
    };
    for (id, fixture, expected) in [
        (
            "zenodo",
            "afuetterer_oaipmh-scythe/get_record.2.oai_dc.xml",
            "https://doi.org/10.5281/zenodo.10357859",
        ),
        (
            "dspace-demo",
            "MITLibraries_oai-pmh-harvester/harvest-from-set.0.listrecords.xml",
            "https://hdl.handle.net/1721.1/140717",
        ),
    ] {
        let body =
            std::fs::read(root.join("fixtures/oai-real-world").join(fixture)).expect("fixture");
        let page = sheaf_harvest::parse_page(&body).expect("page");
        let found = source(id)
            .resource_ids(&page.records[0])
            .expect("resources");
        assert_eq!(found, [expected], "{id}");
    }
}
