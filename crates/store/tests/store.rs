//! The store story: one suite, run on SQLite and on PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures_util::StreamExt;
use serde_json::json;
use sheaf_domain::model::{
    AclEntry, Expect, HarvestRun, LiveHashes, NewRejection, NewSchema, PageItem, Permission,
    Provenance, RecordWrite, RunStatus, SchemaKind, Source, WriteOutcome,
};
use sheaf_domain::{ContentHash, RecordId, SchemaId, SourceId};
use sheaf_store::testing::TestDb;
use sheaf_store::{Backend, ChangeQuery, DynStore, RecordFilter, SchemaOutcome, StoreError};

fn sid(s: &str) -> SchemaId {
    SchemaId::parse(s).expect("schema id")
}

fn rid(s: &str) -> RecordId {
    RecordId::parse(s).expect("record id")
}

fn schema(id: &str, doc: &str) -> NewSchema {
    NewSchema {
        schema_id: sid(id),
        kind: SchemaKind::Xsd,
        namespace: Some("urn:test".into()),
        metadata_prefix: id.into(),
        document: doc.as_bytes().to_vec(),
        record: json!({"schemaId": id}),
    }
}

fn write(id: &str, doc: &str, resources: &[&str]) -> RecordWrite {
    RecordWrite {
        id: rid(id),
        schema_id: sid("s"),
        schema_version: 1,
        document: doc.as_bytes().to_vec(),
        record: json!({"title": id}),
        resources: resources.iter().map(|s| s.to_string()).collect(),
        acl: vec![AclEntry {
            sid: "alice".into(),
            permission: Permission::Administrate,
        }],
        source_id: None,
        provenance: None,
    }
}

fn provenance(identifier: &str, sets: &[&str]) -> Provenance {
    Provenance {
        harvest_time: Utc::now(),
        base_url: "http://provider.test/oai".into(),
        oai_identifier: identifier.into(),
        datestamp: "2026-01-01".into(),
        metadata_namespace: Some("http://www.openarchives.org/OAI/2.0/oai_dc/".into()),
        set_specs: sets.iter().map(|s| s.to_string()).collect(),
    }
}

async fn with_schema(store: &DynStore) {
    store
        .put_schema(schema("s", "<xs:schema/>"), Expect::Absent)
        .await
        .expect("schema");
}

async fn ping_and_backend(store: DynStore) {
    store.ping().await.expect("ping");
    assert!(["sqlite", "postgres"].contains(&store.backend().name()));
}

async fn schema_versions_are_immutable(store: DynStore) {
    let created = store
        .put_schema(schema("s", "v1"), Expect::Absent)
        .await
        .expect("create");
    assert!(matches!(created, SchemaOutcome::Created(ref v) if v.version == 1));
    let again = store
        .put_schema(schema("s", "v1"), Expect::Version(1))
        .await
        .expect("same");
    assert!(matches!(again, SchemaOutcome::Unchanged(ref v) if v.version == 1));
    let dup = store.put_schema(schema("s", "v1"), Expect::Absent).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    let v2 = store
        .put_schema(schema("s", "v2"), Expect::Version(1))
        .await
        .expect("v2")
        .into_version();
    assert_eq!(v2.version, 2);
    assert_ne!(v2.etag(), created.into_version().etag());
    let stale = store
        .put_schema(schema("s", "v3"), Expect::Version(1))
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    let missing = store
        .put_schema(schema("t", "v1"), Expect::Version(1))
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );

    let v1 = store
        .get_schema(&sid("s"), Some(1))
        .await
        .expect("get")
        .expect("v1");
    assert_eq!(v1.document, b"v1");
    let cur = store
        .get_schema(&sid("s"), None)
        .await
        .expect("get")
        .expect("cur");
    assert_eq!(
        (cur.version, cur.document.as_slice()),
        (2, b"v2".as_slice())
    );
    assert!(
        store
            .get_schema(&sid("s"), Some(3))
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        store
            .get_schema(&sid("nope"), None)
            .await
            .expect("get")
            .is_none()
    );
    let versions = store.schema_versions(&sid("s")).await.expect("versions");
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        [2, 1]
    );
    store
        .put_schema(schema("a", "x"), Expect::Any)
        .await
        .expect("any");
    let all = store.list_schemas().await.expect("list");
    assert_eq!(
        all.iter()
            .map(|v| (v.schema_id.as_str(), v.version))
            .collect::<Vec<_>>(),
        [("a", 1), ("s", 2)]
    );
}

async fn put_unchanged_update_and_conflict(store: DynStore) {
    with_schema(&store).await;
    let c = store
        .put_record(
            write("r1", "<a/>", &["https://doi.org/10.1/x"]),
            Expect::Absent,
        )
        .await
        .expect("create");
    let WriteOutcome::Created(v1) = c else {
        panic!("expected created, got {c:?}")
    };
    assert_eq!(v1.version, 1);
    assert!(v1.seq > 0);

    // Identical content: nothing written, not even a new sequence.
    let u = store
        .put_record(
            write("r1", "<a/>", &["https://doi.org/10.1/x"]),
            Expect::Version(1),
        )
        .await
        .expect("same");
    assert!(matches!(u, WriteOutcome::Unchanged(ref v) if v.version == 1 && v.seq == v1.seq));
    // Provenance alone does not make a new version.
    let mut w = write("r1", "<a/>", &["https://doi.org/10.1/x"]);
    w.provenance = Some(provenance("oai:x:1", &[]));
    assert!(matches!(
        store.put_record(w, Expect::Any).await.expect("prov"),
        WriteOutcome::Unchanged(_)
    ));

    // Each part of the content makes a new version: document, schema link,
    // resources, record fields, ACL.
    let mut expected = 1;
    let mut variants = vec![
        write("r1", "<b/>", &["https://doi.org/10.1/x"]),
        write("r1", "<b/>", &["https://doi.org/10.1/y"]),
    ];
    let mut rec = write("r1", "<b/>", &["https://doi.org/10.1/y"]);
    rec.record = json!({"title": "changed"});
    variants.push(rec.clone());
    rec.acl.push(AclEntry {
        sid: "bob".into(),
        permission: Permission::Read,
    });
    variants.push(rec);
    for w in variants {
        let o = store
            .put_record(w, Expect::Version(expected))
            .await
            .expect("update");
        expected += 1;
        assert!(
            matches!(o, WriteOutcome::Updated(ref v) if v.version == expected),
            "{o:?}"
        );
    }
    store
        .put_schema(schema("s", "<xs:schema v2/>"), Expect::Version(1))
        .await
        .expect("schema v2");
    let mut relinked = write("r1", "<b/>", &["https://doi.org/10.1/y"]);
    relinked.record = json!({"title": "changed"});
    relinked.acl.push(AclEntry {
        sid: "bob".into(),
        permission: Permission::Read,
    });
    relinked.schema_version = 2;
    let o = store
        .put_record(relinked, Expect::Version(expected))
        .await
        .expect("relink");
    assert!(matches!(o, WriteOutcome::Updated(ref v) if v.schema_version == 2));
    expected += 1;

    // Resource links follow the current version.
    let by = |r: &str| RecordFilter {
        resource_ids: vec![r.to_owned()],
        ..Default::default()
    };
    let (old, _) = store
        .list_records(&by("https://doi.org/10.1/x"), 0, 10)
        .await
        .expect("x");
    assert!(old.is_empty());
    let (new, _) = store
        .list_records(&by("https://doi.org/10.1/y"), 0, 10)
        .await
        .expect("y");
    assert_eq!(new.len(), 1);

    let stale = store
        .put_record(write("r1", "<c/>", &[]), Expect::Version(1))
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    let dup = store
        .put_record(write("r1", "<c/>", &[]), Expect::Absent)
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    let missing = store
        .put_record(write("zz", "<c/>", &[]), Expect::Version(1))
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );

    let versions = store.record_versions(&rid("r1")).await.expect("versions");
    assert_eq!(versions.len() as i64, expected);
    assert_eq!(versions[0].version, expected);
    let seqs: Vec<i64> = versions.iter().rev().map(|v| v.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let times: Vec<_> = versions.iter().rev().map(|v| v.changed_at).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
    let first = store
        .get_record(&rid("r1"), Some(1))
        .await
        .expect("get")
        .expect("v1");
    assert_eq!(first.document, b"<a/>");
    assert_eq!(first.etag(), v1.etag());
    let etags: std::collections::HashSet<_> = versions.iter().map(|v| v.etag()).collect();
    assert_eq!(
        etags.len(),
        versions.len(),
        "every version has its own ETag"
    );
    assert!(
        store
            .get_record(&rid("r1"), Some(99))
            .await
            .expect("get")
            .is_none()
    );
    assert_eq!(
        store.record_acl(&rid("r1")).await.expect("acl").len(),
        2,
        "alice and bob"
    );
}

async fn delete_and_resurrect(store: DynStore) {
    with_schema(&store).await;
    store
        .put_record(write("r", "<live/>", &["res"]), Expect::Absent)
        .await
        .expect("create");
    let d = store
        .delete_record(&rid("r"), Expect::Version(1), None)
        .await
        .expect("delete");
    let WriteOutcome::Deleted(t) = d else {
        panic!("expected tombstone, got {d:?}")
    };
    assert!(t.deleted && t.version == 2 && t.document.is_empty());
    assert!(matches!(
        store.delete_record(&rid("r"), Expect::Any, None).await.expect("again"),
        WriteOutcome::Unchanged(ref v) if v.version == 2
    ));
    assert!(matches!(
        store.delete_record(&rid("none"), Expect::Any, None).await,
        Err(StoreError::NotFound(_))
    ));
    // A deleted record is not listed, not found by resource, but still readable.
    let (live, total) = store
        .list_records(&RecordFilter::default(), 0, 10)
        .await
        .expect("list");
    assert!(live.is_empty() && total == 0);
    let f = RecordFilter {
        include_deleted: true,
        ..Default::default()
    };
    assert_eq!(store.list_records(&f, 0, 10).await.expect("list").1, 1);

    let stale = store.resurrect_record(&rid("r"), Expect::Version(1)).await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))));
    let r = store
        .resurrect_record(&rid("r"), Expect::Version(2))
        .await
        .expect("resurrect");
    let WriteOutcome::Updated(back) = r else {
        panic!("expected a new version, got {r:?}")
    };
    assert_eq!(back.version, 3);
    assert!(!back.deleted);
    assert_eq!(back.document, b"<live/>");
    assert_eq!(back.resources, ["res"]);
    assert!(matches!(
        store
            .resurrect_record(&rid("r"), Expect::Any)
            .await
            .expect("live"),
        WriteOutcome::Unchanged(_)
    ));
    // Putting the old content onto a tombstone also revives it.
    store
        .delete_record(&rid("r"), Expect::Any, None)
        .await
        .expect("delete");
    let again = store
        .put_record(write("r", "<live/>", &["res"]), Expect::Any)
        .await
        .expect("put");
    assert!(matches!(again, WriteOutcome::Updated(ref v) if v.version == 5 && !v.deleted));
}

async fn lists_filter_and_page(store: DynStore) {
    with_schema(&store).await;
    store
        .put_schema(schema("other", "x"), Expect::Absent)
        .await
        .expect("schema");
    for i in 0..25 {
        let mut w = write(&format!("r{i:02}"), "<a/>", &[&format!("res-{}", i % 5)]);
        if i % 2 == 0 {
            w.schema_id = sid("other");
        }
        if i == 7 {
            w.acl = vec![AclEntry {
                sid: "carol".into(),
                permission: Permission::Read,
            }];
        }
        store.put_record(w, Expect::Absent).await.expect("put");
    }
    let all = RecordFilter::default();
    let (page, total) = store.list_records(&all, 0, 10).await.expect("page");
    assert_eq!((page.len(), total), (10, 25));
    let (page3, _) = store.list_records(&all, 20, 10).await.expect("page 3");
    assert_eq!(page3.len(), 5);
    assert_eq!(page3[0].id.as_str(), "r20");

    let by_res = RecordFilter {
        resource_ids: vec!["res-2".into()],
        ..Default::default()
    };
    let (hits, n) = store
        .list_records(&by_res, 0, 100)
        .await
        .expect("by resource");
    assert_eq!(n, 5);
    assert!(hits.iter().all(|v| v.resources == ["res-2"]));

    let by_schema = RecordFilter {
        schema_ids: vec![sid("other")],
        ..Default::default()
    };
    assert_eq!(
        store
            .list_records(&by_schema, 0, 100)
            .await
            .expect("schema")
            .1,
        13
    );
    let by_id = RecordFilter {
        ids: vec![rid("r03"), rid("r04"), rid("missing")],
        ..Default::default()
    };
    assert_eq!(store.list_records(&by_id, 0, 100).await.expect("ids").1, 2);

    let (everything, _) = store.list_records(&all, 0, 100).await.expect("all");
    let mid = everything[12].changed_at;
    let from = RecordFilter {
        from: Some(mid),
        ..Default::default()
    };
    let (later, _) = store.list_records(&from, 0, 100).await.expect("from");
    assert!(later.iter().all(|v| v.changed_at >= mid) && !later.is_empty());
    let until = RecordFilter {
        until: Some(mid),
        ..Default::default()
    };
    let (earlier, _) = store.list_records(&until, 0, 100).await.expect("until");
    assert!(earlier.iter().all(|v| v.changed_at <= mid) && !earlier.is_empty());

    let carol = RecordFilter {
        readable_by: Some(vec!["carol".into()]),
        ..Default::default()
    };
    let (mine, n) = store.list_records(&carol, 0, 100).await.expect("acl");
    assert_eq!(n, 1);
    assert_eq!(mine[0].id.as_str(), "r07");
    let nobody = RecordFilter {
        readable_by: Some(vec![]),
        ..Default::default()
    };
    assert_eq!(
        store.list_records(&nobody, 0, 100).await.expect("none").1,
        0
    );
    // A record without any ACL (harvested) is public.
    let mut public = write("pub", "<a/>", &[]);
    public.acl.clear();
    store
        .put_record(public, Expect::Absent)
        .await
        .expect("public");
    let (seen, n) = store.list_records(&nobody, 0, 100).await.expect("public");
    assert_eq!((n, seen[0].id.as_str()), (1, "pub"));
    assert_eq!(
        store.list_records(&carol, 0, 100).await.expect("carol").1,
        2
    );
}

async fn change_feed_is_a_snapshot(store: DynStore) {
    with_schema(&store).await;
    for i in 0..6 {
        let mut w = write(&format!("c{i}"), "<a/>", &[]);
        w.source_id = Some(SourceId::parse("src").expect("id"));
        w.provenance = Some(provenance(
            &format!("oai:x:{i}"),
            if i < 3 { &["math"] } else { &["phys"] },
        ));
        store.put_record(w, Expect::Absent).await.expect("put");
    }
    let h = store.horizon().await.expect("horizon");
    let q = |after: i64| ChangeQuery {
        after_seq: after,
        horizon_seq: h.seq,
        limit: 4,
        ..Default::default()
    };
    assert_eq!(store.count_changes(&q(0)).await.expect("count"), 6);
    let first = store.changes(&q(0)).await.expect("page 1");
    assert_eq!(first.len(), 4);
    let streamed: Vec<_> = store
        .changes_stream(q(0))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("stream");
    assert_eq!(
        streamed, first,
        "the stream yields what the page query returns"
    );
    // Changes after the snapshot: c0 (already served) and c5 (not yet served)
    // are updated, c4 deleted, c9 created. The snapshot still shows each of
    // its records once, as it was.
    let last_seq = first.last().map(|v| v.seq).unwrap_or_default();
    store
        .put_record(write("c0", "<new/>", &[]), Expect::Any)
        .await
        .expect("c0");
    store
        .put_record(write("c5", "<new/>", &[]), Expect::Any)
        .await
        .expect("c5");
    store
        .delete_record(&rid("c4"), Expect::Any, None)
        .await
        .expect("c4");
    store
        .put_record(write("c9", "<a/>", &[]), Expect::Absent)
        .await
        .expect("c9");
    let rest = store.changes(&q(last_seq)).await.expect("page 2");
    let ids: Vec<&str> = first.iter().chain(&rest).map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["c0", "c1", "c2", "c3", "c4", "c5"]);
    assert!(
        first
            .iter()
            .chain(&rest)
            .all(|v| v.version == 1 && !v.deleted)
    );

    // The next snapshot has every change, each record once, newest version.
    let h2 = store.horizon().await.expect("horizon 2");
    assert!(h2.seq > h.seq && h2.at >= h.at);
    let next = store
        .changes(&ChangeQuery {
            after_seq: h.seq,
            horizon_seq: h2.seq,
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("incremental");
    let got: Vec<(&str, i64, bool)> = next
        .iter()
        .map(|v| (v.id.as_str(), v.version, v.deleted))
        .collect();
    assert_eq!(
        got,
        [
            ("c0", 2, false),
            ("c5", 2, false),
            ("c4", 2, true),
            ("c9", 1, false)
        ]
    );

    // Filters: source, upstream set, schema prefix, time window.
    let all = |f: ChangeQuery| ChangeQuery {
        horizon_seq: h.seq,
        limit: 100,
        ..f
    };
    let src = store
        .count_changes(&all(ChangeQuery {
            source_id: Some(SourceId::parse("src").expect("id")),
            ..Default::default()
        }))
        .await
        .expect("src");
    assert_eq!(src, 6);
    let math = store
        .changes(&all(ChangeQuery {
            upstream_set: Some("math".into()),
            ..Default::default()
        }))
        .await
        .expect("set");
    assert_eq!(math.len(), 3);
    let by_prefix = store
        .count_changes(&all(ChangeQuery {
            metadata_prefix: Some("s".into()),
            ..Default::default()
        }))
        .await
        .expect("prefix");
    assert_eq!(by_prefix, 6);
    let none = store
        .count_changes(&all(ChangeQuery {
            metadata_prefix: Some("nope".into()),
            ..Default::default()
        }))
        .await
        .expect("prefix");
    assert_eq!(none, 0);
    let future = store
        .count_changes(&all(ChangeQuery {
            from: Some(h2.at + chrono::TimeDelta::seconds(5)),
            ..Default::default()
        }))
        .await
        .expect("from");
    assert_eq!(future, 0);
    let past = store
        .count_changes(&all(ChangeQuery {
            until: Some(first[0].changed_at - chrono::TimeDelta::seconds(5)),
            ..Default::default()
        }))
        .await
        .expect("until");
    assert_eq!(past, 0);
    assert_eq!(
        store
            .upstream_sets(&SourceId::parse("src").expect("id"))
            .await
            .expect("sets"),
        ["math", "phys"]
    );
    let earliest = store
        .earliest_change()
        .await
        .expect("earliest")
        .expect("some");
    assert!(earliest <= first[1].changed_at);
}

async fn sources_runs_and_pages(store: DynStore) {
    with_schema(&store).await;
    let src = SourceId::parse("prov").expect("id");
    let source = Source {
        id: src.clone(),
        base_url: "http://provider.test/oai".into(),
        enabled: true,
        config: json!({"metadata_prefix": "oai_dc"}),
        updated_at: Utc::now(),
    };
    store.upsert_source(&source).await.expect("source");
    store
        .upsert_source(&Source {
            enabled: false,
            ..source.clone()
        })
        .await
        .expect("update");
    let got = store.get_source(&src).await.expect("get").expect("exists");
    assert!(!got.enabled);
    assert_eq!(store.list_sources().await.expect("list").len(), 1);

    let run = store
        .start_run(&src, Some("2026-01-01".into()), None)
        .await
        .expect("run");
    assert_eq!(run.status, RunStatus::Running);
    assert!(matches!(
        store.start_run(&src, None, None).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store
            .unfinished_run(&src)
            .await
            .expect("unfinished")
            .map(|r| r.id),
        Some(run.id)
    );

    let mut put = write("p1", "<a/>", &[]);
    put.source_id = Some(src.clone());
    let items = vec![
        PageItem::put(put.clone()),
        PageItem::put(write("p2", "<a/>", &[])),
        PageItem::Delete {
            id: rid("never-seen"),
            provenance: None,
        },
        PageItem::Reject(NewRejection {
            origin: "harvest".into(),
            source_id: Some(src.clone()),
            run_id: None,
            identifier: Some("oai:x:bad".into()),
            schema_id: Some(sid("s")),
            schema_version: Some(1),
            message: "line 1, column 3: bad".into(),
            document: b"<bad".to_vec(),
        }),
    ];
    let c = store
        .commit_page(
            run.id,
            items,
            Some(json!({"token": "t1"})),
            Some("2026-11-23T10:00:00Z".into()),
        )
        .await
        .expect("page 1");
    assert_eq!((c.seen, c.created, c.deleted, c.rejected), (4, 2, 1, 1));
    assert!(c.balanced());
    let c2 = store
        .commit_page(
            run.id,
            vec![
                PageItem::put(put),
                PageItem::Delete {
                    id: rid("p2"),
                    provenance: None,
                },
            ],
            Some(json!({"token": "t2"})),
            Some("2026-11-23T11:00:00Z".into()),
        )
        .await
        .expect("page 2");
    assert_eq!((c2.seen, c2.unchanged, c2.deleted), (2, 1, 1));
    let mid = store.get_run(run.id).await.expect("get").expect("run");
    assert_eq!(mid.counts.seen, 6);
    assert!(mid.counts.balanced());
    assert_eq!(mid.checkpoint, Some(json!({"token": "t2"})));
    assert_eq!(
        mid.response_date.as_deref(),
        Some("2026-11-23T10:00:00Z"),
        "first page's"
    );

    let done = store
        .finish_run(run.id, RunStatus::Succeeded, None)
        .await
        .expect("finish");
    assert_eq!(done.status, RunStatus::Succeeded);
    assert!(done.finished_at.is_some());
    assert!(matches!(
        store.commit_page(run.id, vec![], None, None).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(store.unfinished_run(&src).await.expect("none").is_none());
    assert_eq!(
        store
            .last_successful_run(&src)
            .await
            .expect("last")
            .map(|r| r.id),
        Some(run.id)
    );
    let second = store.start_run(&src, None, None).await.expect("second");
    store
        .finish_run(second.id, RunStatus::Failed, Some("provider down".into()))
        .await
        .expect("fail");
    let runs = store.list_runs(Some(&src), 10).await.expect("runs");
    assert_eq!(
        runs.iter().map(|r| r.id).collect::<Vec<_>>(),
        [second.id, run.id]
    );
    assert_eq!(store.list_runs(None, 1).await.expect("runs").len(), 1);
    assert_eq!(
        store
            .last_successful_run(&src)
            .await
            .expect("last")
            .map(|r| r.id),
        Some(run.id)
    );

    let rejections = store
        .list_rejections(Some(&src), 10)
        .await
        .expect("rejections");
    assert_eq!(rejections.len(), 1);
    assert_eq!(rejections[0].rejection.document, b"<bad");
    assert_eq!(rejections[0].rejection.run_id, Some(run.id));
    let id = store
        .add_rejection(NewRejection {
            origin: "rest".into(),
            source_id: None,
            run_id: None,
            identifier: None,
            schema_id: None,
            schema_version: None,
            message: "not JSON".into(),
            document: b"{".to_vec(),
        })
        .await
        .expect("add");
    assert_eq!(
        store.list_rejections(None, 10).await.expect("all")[0].id,
        id
    );
}

async fn failed_page_commits_nothing(store: DynStore) {
    with_schema(&store).await;
    let src = SourceId::parse("prov").expect("id");
    let run = store.start_run(&src, None, None).await.expect("run");
    let mut bad = write("x2", "<a/>", &[]);
    bad.schema_id = sid("unregistered");
    let r = store
        .commit_page(
            run.id,
            vec![PageItem::put(write("x1", "<a/>", &[])), PageItem::put(bad)],
            Some(json!({"token": "t"})),
            None,
        )
        .await;
    assert!(r.is_err());
    assert!(
        store
            .get_record(&rid("x1"), None)
            .await
            .expect("get")
            .is_none()
    );
    let run = store.get_run(run.id).await.expect("get").expect("run");
    assert_eq!((run.counts.seen, run.checkpoint), (0, None));
}

async fn shared_secret_first_writer_wins(store: DynStore) {
    let a = store
        .shared_secret("token-key", b"first".to_vec())
        .await
        .expect("first");
    let b = store
        .shared_secret("token-key", b"second".to_vec())
        .await
        .expect("second");
    assert_eq!(
        (a.as_slice(), b.as_slice()),
        (b"first".as_slice(), b"first".as_slice())
    );
    let other = store
        .shared_secret("other", b"x".to_vec())
        .await
        .expect("other");
    assert_eq!(other, b"x");
}

async fn leases_expire(store: DynStore) {
    let src = SourceId::parse("prov").expect("id");
    let long = Duration::from_secs(60);
    assert!(store.acquire_lease(&src, "a", long).await.expect("a"));
    assert!(!store.acquire_lease(&src, "b", long).await.expect("b"));
    assert!(store.acquire_lease(&src, "a", long).await.expect("renew"));
    store.release_lease(&src, "b").await.expect("not b's");
    assert!(
        !store
            .acquire_lease(&src, "b", long)
            .await
            .expect("still a's")
    );
    store.release_lease(&src, "a").await.expect("release");
    assert!(
        store
            .acquire_lease(&src, "b", Duration::ZERO)
            .await
            .expect("b")
    );
    // b's lease has expired (ttl zero): a crashed holder does not block.
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(store.acquire_lease(&src, "a", long).await.expect("a again"));
}

async fn concurrent_updates_one_wins(store: DynStore) {
    with_schema(&store).await;
    store
        .put_record(write("hot", "<v1/>", &[]), Expect::Absent)
        .await
        .expect("create");
    let store = Arc::new(store);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let s = store.clone();
            tokio::spawn(async move {
                s.put_record(write("hot", &format!("<v{i}/>x"), &[]), Expect::Version(1))
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    let mut conflicts = 0;
    for t in tasks {
        match t.await.expect("join") {
            Ok(WriteOutcome::Updated(_)) => ok += 1,
            Err(StoreError::Conflict(_)) => conflicts += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((ok, conflicts), (1, 7));
    let versions = store.record_versions(&rid("hot")).await.expect("versions");
    assert_eq!(versions.len(), 2, "exactly one new version");
}

async fn concurrent_writers_all_succeed(store: DynStore) {
    with_schema(&store).await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let s = store.clone();
            tokio::spawn(async move {
                s.put_record(write(&format!("w{i}"), "<a/>", &[]), Expect::Absent)
                    .await
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for t in tasks {
        let o = t.await.expect("join").expect("write");
        assert!(matches!(o, WriteOutcome::Created(_)));
        seqs.push(o.version().seq);
    }
    seqs.sort();
    seqs.dedup();
    assert_eq!(seqs.len(), 8, "distinct change sequences");
    assert_eq!(
        store
            .list_records(&RecordFilter::default(), 0, 100)
            .await
            .expect("list")
            .1,
        8
    );
}

/// The hashes of a version written without an input key.
fn live(o: &WriteOutcome) -> LiveHashes {
    LiveHashes {
        content: o.version().content_hash.clone(),
        input: None,
    }
}

/// Content hashes of live current versions by id, in chunks, skipping
/// tombstones and unknown ids.
async fn live_hashes_by_id(store: DynStore) {
    with_schema(&store).await;
    let ids: Vec<RecordId> = (0..1_200).map(|i| rid(&format!("h{i}"))).collect();
    // Three live records, one updated, one deleted; 1 200 ids asked for
    // (more than one statement's chunk).
    let mut expected = std::collections::HashMap::new();
    for id in ["h0", "h599", "h1199", "h7"] {
        let o = store
            .put_record(write(id, "<v1/>", &[]), Expect::Absent)
            .await
            .expect("create");
        expected.insert(rid(id), live(&o));
    }
    let o = store
        .put_record(write("h599", "<v2/>", &[]), Expect::Version(1))
        .await
        .expect("update");
    expected.insert(rid("h599"), live(&o));
    store
        .delete_record(&rid("h7"), Expect::Any, None)
        .await
        .expect("delete");
    expected.remove(&rid("h7"));
    assert_eq!(store.live_hashes(&ids).await.expect("hashes"), expected);
    assert!(store.live_hashes(&[]).await.expect("none").is_empty());
}

/// A running harvest of a source `src`, for page commits.
async fn running_harvest(store: &DynStore) -> HarvestRun {
    let src = SourceId::parse("src").expect("source");
    store
        .upsert_source(&Source {
            id: src.clone(),
            base_url: "http://provider.test/oai".into(),
            enabled: true,
            config: json!({}),
            updated_at: Utc::now(),
        })
        .await
        .expect("source");
    store.start_run(&src, None, None).await.expect("run")
}

/// One page holding the same record several times, resource and ACL
/// changes, and a record created and deleted: decided in page order,
/// written as if one write at a time.
async fn a_page_is_applied_in_order(store: DynStore) {
    with_schema(&store).await;
    store
        .put_record(write("a", "<a1/>", &["x", "shared"]), Expect::Absent)
        .await
        .expect("a");
    let run = running_harvest(&store).await;
    let mut a2 = write("a", "<a2/>", &["y", "shared"]);
    a2.acl.push(AclEntry {
        sid: "bob".into(),
        permission: Permission::Read,
    });
    let items = vec![
        // Equal to the live version, then changed within the same page.
        PageItem::put(write("a", "<a1/>", &["x", "shared"])),
        PageItem::put(a2.clone()),
        PageItem::put(write("b", "<b/>", &["shared"])),
        PageItem::put(a2),
        PageItem::put(write("a", "<a3/>", &["z"])),
        PageItem::Delete {
            id: rid("b"),
            provenance: None,
        },
        PageItem::Delete {
            id: rid("b"),
            provenance: None,
        },
        PageItem::Delete {
            id: rid("never"),
            provenance: None,
        },
    ];
    let c = store
        .commit_page(run.id, items, None, None)
        .await
        .expect("page");
    assert_eq!(
        (c.seen, c.created, c.updated, c.unchanged, c.deleted),
        (8, 1, 2, 2, 3)
    );
    assert!(c.balanced());

    let a = store.record_versions(&rid("a")).await.expect("a versions");
    assert_eq!(
        a.iter()
            .map(|v| (v.version, v.document.clone()))
            .collect::<Vec<_>>(),
        vec![
            (3, b"<a3/>".to_vec()),
            (2, b"<a2/>".to_vec()),
            (1, b"<a1/>".to_vec())
        ]
    );
    assert!(a[0].seq > a[1].seq && a[1].seq > a[2].seq);
    let b = store.record_versions(&rid("b")).await.expect("b versions");
    assert_eq!(b.len(), 2, "created, then one tombstone");
    assert!(b[0].deleted && !b[1].deleted);

    // Resource links follow the last version of each record.
    let by = |r: &str| RecordFilter {
        resource_ids: vec![r.to_owned()],
        include_deleted: true,
        ..RecordFilter::default()
    };
    for (resource, expected) in [
        ("x", vec![]),
        ("y", vec![]),
        ("z", vec!["a"]),
        ("shared", vec!["b"]),
    ] {
        let (found, _) = store
            .list_records(&by(resource), 0, 10)
            .await
            .expect("by resource");
        let found: Vec<&str> = found.iter().map(|v| v.id.as_str()).collect();
        assert_eq!(found, expected, "records of resource {resource}");
    }
    // The ACL rows are those of the last version.
    let acl = store.record_acl(&rid("a")).await.expect("acl");
    assert_eq!(
        acl.iter().map(|e| e.sid.as_str()).collect::<Vec<_>>(),
        vec!["alice"]
    );
}

/// Input keys: kept with the versions a harvest writes; a `Keep` of the
/// live key counts as unchanged and writes nothing; the same content
/// under a new key re-keys the live version in place; a `Keep` of a key
/// that is no longer live refuses the whole page.
async fn input_keys_keep_and_stale_pages(store: DynStore) {
    with_schema(&store).await;
    let run = running_harvest(&store).await;
    let key = |k: &str| ContentHash::of_parts([k.as_bytes()]);
    let put = |doc: &str, k: &str| PageItem::harvested(write("k", doc, &["r"]), key(k));
    let keep = |k: &str| PageItem::Keep {
        id: rid("k"),
        input: key(k),
    };
    let live_input = || async {
        store
            .live_hashes(&[rid("k")])
            .await
            .expect("hashes")
            .get(&rid("k"))
            .and_then(|l| l.input.clone())
    };
    let page = |items: Vec<PageItem>, n: u64| {
        let store = store.clone();
        async move {
            store
                .commit_page(run.id, items, Some(json!({ "page": n })), None)
                .await
        }
    };

    let c = page(vec![put("<k1/>", "one")], 1).await.expect("created");
    assert_eq!((c.seen, c.created), (1, 1));
    assert_eq!(live_input().await, Some(key("one")));

    let c = page(vec![keep("one")], 2).await.expect("kept");
    assert_eq!((c.seen, c.unchanged), (1, 1));
    assert!(c.balanced());

    // Same content, new key: unchanged, and the live version re-keyed.
    let c = page(vec![put("<k1/>", "two")], 3).await.expect("re-keyed");
    assert_eq!((c.seen, c.unchanged), (1, 1));
    assert_eq!(live_input().await, Some(key("two")));
    assert_eq!(store.record_versions(&rid("k")).await.expect("v").len(), 1);

    // A stale keep refuses the page, puts included: nothing is written.
    let refused = page(vec![put("<other/>", "x"), keep("one")], 4).await;
    assert!(matches!(refused, Err(StoreError::Stale(_))), "{refused:?}");
    let after = store.get_run(run.id).await.expect("get").expect("run");
    assert_eq!(after.checkpoint, Some(json!({ "page": 3 })));
    assert_eq!((after.counts.seen, after.counts.unchanged), (3, 2));
    assert_eq!(store.record_versions(&rid("k")).await.expect("v").len(), 1);

    // A write without a key (a deposit) leaves none live: keeps are stale.
    store
        .put_record(write("k", "<deposited/>", &["r"]), Expect::Any)
        .await
        .expect("deposit");
    assert_eq!(live_input().await, None);
    assert!(matches!(
        page(vec![keep("two")], 5).await,
        Err(StoreError::Stale(_))
    ));

    // A changed document under its key makes a version carrying the key.
    let c = page(vec![put("<k3/>", "three")], 6).await.expect("updated");
    assert_eq!((c.seen, c.updated), (1, 1));
    assert_eq!(live_input().await, Some(key("three")));

    // A keep of a deleted record is stale too.
    store
        .delete_record(&rid("k"), Expect::Any, None)
        .await
        .expect("delete");
    assert!(matches!(
        page(vec![keep("three")], 7).await,
        Err(StoreError::Stale(_))
    ));
}

/// A database from before the head rows carried their version's hashes
/// (migration 5) gets them from its versions on upgrade: a re-harvest
/// still finds what it may skip.
async fn heads_get_their_hashes_on_upgrade(db: TestDb) {
    let store = db.store.clone();
    with_schema(&store).await;
    let run = running_harvest(&store).await;
    let key = ContentHash::of_parts([b"input".as_slice()]);
    let items = vec![
        PageItem::harvested(write("h", "<h/>", &["r"]), key.clone()),
        PageItem::put(write("p", "<p/>", &[])),
        PageItem::put(write("d", "<d/>", &[])),
    ];
    store
        .commit_page(run.id, items, None, None)
        .await
        .expect("page");
    store
        .delete_record(&rid("d"), Expect::Any, None)
        .await
        .expect("delete");
    let ids = [rid("h"), rid("p"), rid("d")];
    let live = store.live_hashes(&ids).await.expect("hashes");
    assert_eq!(live.len(), 2, "the tombstone is not live: {live:?}");
    assert_eq!(live[&rid("h")].input, Some(key));
    assert_eq!(live[&rid("p")].input, None);

    // Back to migration 4's schema, with a head whose version is missing
    // (which the store never leaves, and which must not stop the upgrade).
    let undo = [
        "ALTER TABLE records DROP COLUMN content_hash",
        "ALTER TABLE records DROP COLUMN input_hash",
        "DELETE FROM _sqlx_migrations WHERE version = 5",
        "INSERT INTO records (record_id, version, seq, deleted, schema_id, source_id, \
         changed_at, created_at) VALUES ('orphan', 1, 1000, false, 's', NULL, 0, 0)",
    ];
    match db.url.backend() {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(db.url.expose())
                .await
                .expect("db");
            for sql in undo {
                sqlx::query(sql).execute(&pool).await.expect(sql);
            }
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(db.url.expose()).await.expect("db");
            for sql in undo {
                sqlx::query(sql).execute(&pool).await.expect(sql);
            }
        }
    }

    let upgraded = sheaf_store::connect(&db.url).await.expect("upgrade");
    assert_eq!(upgraded.live_hashes(&ids).await.expect("hashes"), live);
    let orphan = upgraded
        .live_hashes(&[rid("orphan")])
        .await
        .expect("hashes");
    assert_eq!(orphan[&rid("orphan")].content.as_str(), "", "{orphan:?}");
    let c = upgraded
        .commit_page(
            run.id,
            vec![PageItem::Keep {
                id: rid("h"),
                input: ContentHash::of_parts([b"input".as_slice()]),
            }],
            None,
            None,
        )
        .await
        .expect("kept after the upgrade");
    assert_eq!((c.seen, c.unchanged), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn heads_get_their_hashes_on_upgrade_on_sqlite() {
    heads_get_their_hashes_on_upgrade(TestDb::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn heads_get_their_hashes_on_upgrade_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        heads_get_their_hashes_on_upgrade(db).await;
    }
}

/// Records whose content a page repeats under new input keys are re-keyed
/// together, a record given two keys in one page keeping the last.
async fn many_records_rekeyed_in_one_page(store: DynStore) {
    with_schema(&store).await;
    let run = running_harvest(&store).await;
    let key = |k: &str| ContentHash::of_parts([k.as_bytes()]);
    let put = |id: &str, k: &str| PageItem::harvested(write(id, &format!("<{id}/>"), &[]), key(k));
    let c = store
        .commit_page(run.id, vec![put("a", "1"), put("b", "1")], None, None)
        .await
        .expect("created");
    assert_eq!(c.created, 2);
    let c = store
        .commit_page(
            run.id,
            vec![put("a", "2"), put("b", "2"), put("a", "3")],
            None,
            None,
        )
        .await
        .expect("re-keyed");
    assert_eq!((c.seen, c.unchanged), (3, 3));
    let live = store
        .live_hashes(&[rid("a"), rid("b")])
        .await
        .expect("hashes");
    assert_eq!(live[&rid("a")].input, Some(key("3")));
    assert_eq!(live[&rid("b")].input, Some(key("2")));
    for id in ["a", "b"] {
        assert_eq!(store.record_versions(&rid(id)).await.expect("v").len(), 1);
    }
    // The versions carry the keys too: a keep of the new key settles.
    let c = store
        .commit_page(
            run.id,
            vec![PageItem::Keep {
                id: rid("a"),
                input: key("3"),
            }],
            None,
            None,
        )
        .await
        .expect("kept");
    assert_eq!(c.unchanged, 1);
}

sheaf_store::backend_tests!(
    many_records_rekeyed_in_one_page,
    ping_and_backend,
    schema_versions_are_immutable,
    put_unchanged_update_and_conflict,
    delete_and_resurrect,
    lists_filter_and_page,
    change_feed_is_a_snapshot,
    sources_runs_and_pages,
    failed_page_commits_nothing,
    leases_expire,
    shared_secret_first_writer_wins,
    concurrent_updates_one_wins,
    concurrent_writers_all_succeed,
    live_hashes_by_id,
    a_page_is_applied_in_order,
    input_keys_keep_and_stale_pages,
);
