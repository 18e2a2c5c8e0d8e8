use super::*;
use proptest::prelude::*;
use rust_decimal::dec;

fn d(text: &str) -> Decimal {
    text.parse().unwrap()
}

fn run() -> RunStart {
    RunStart {
        started_at: 1_000,
        algorithm: "algorithms/sma_cross.py".into(),
        broker: "ccxt:binance".into(),
        symbols: vec!["BTC/USDT".into(), "ETH/USDT".into()],
        cash_currency: "USDT".into(),
        initial_cash: dec!(10000),
        strategies: None,
    }
}

fn intent(id: &str) -> OrderIntent {
    OrderIntent {
        client_order_id: id.into(),
        symbol: "BTC/USDT".into(),
        side: OrderSide::Buy,
        quantity: dec!(0.5),
        order_type: OrderType::Limit,
        limit_price: Some(dec!(64000.10)),
        stop_price: None,
        time_in_force: TimeInForce::Gtc,
        created_at: 2_000,
    }
}

fn fill(
    id: &str,
    trade: &str,
    qty: &str,
    price: &str,
    fee: &str,
    asset: Option<&str>,
) -> FillRecord {
    FillRecord {
        client_order_id: id.into(),
        trade_id: trade.into(),
        quantity: d(qty),
        price: d(price),
        fee: d(fee),
        fee_asset: asset.map(str::to_string),
        time: 5_000,
    }
}

fn journal() -> Journal {
    let mut j = Journal::open_in_memory().unwrap();
    j.start_run(&run()).unwrap();
    j
}

fn temp_journal() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.sqlite");
    (dir, path)
}

// ---- opening ---------------------------------------------------------------------------

#[test]
fn open_creates_a_wal_journal_with_full_sync_and_reopens() {
    let (_dir, path) = temp_journal();
    {
        let j = Journal::open(&path).unwrap();
        let mode: String = j
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = j
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "synchronous=FULL");
        assert_eq!(j.schema_version().unwrap(), SCHEMA_VERSION);
    }
    let mut j = Journal::open(&path).unwrap();
    assert_eq!(j.start_run(&run()).unwrap(), 1);
}

#[test]
fn a_file_that_is_not_sqlite_is_refused() {
    let (_dir, path) = temp_journal();
    std::fs::write(&path, b"this is a CSV file, not a database\n1,2,3\n").unwrap();
    let err = Journal::open(&path).unwrap_err();
    assert!(matches!(err, JournalError::NotAJournal { .. }), "{err}");
    assert!(
        err.to_string().contains("is not a rustybt journal"),
        "{err}"
    );
}

#[test]
fn another_sqlite_database_is_refused() {
    let (_dir, path) = temp_journal();
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE prices (t INTEGER, p TEXT);")
        .unwrap();
    drop(conn);
    let err = Journal::open(&path).unwrap_err();
    assert!(err.to_string().contains("prices"), "{err}");
    assert!(matches!(err, JournalError::NotAJournal { .. }));
}

#[test]
fn a_meta_table_of_another_application_is_refused() {
    let (_dir, path) = temp_journal();
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT); INSERT INTO meta VALUES ('application', 'other');",
    )
    .unwrap();
    drop(conn);
    let err = Journal::open(&path).unwrap_err();
    assert!(err.to_string().contains("\"other\""), "{err}");
}

#[test]
fn a_newer_schema_is_refused_with_both_versions() {
    let (_dir, path) = temp_journal();
    drop(Journal::open(&path).unwrap());
    let conn = Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE meta SET value = '99' WHERE key = 'schema_version'",
        [],
    )
    .unwrap();
    drop(conn);
    let err = Journal::open(&path).unwrap_err();
    match &err {
        JournalError::NewerSchema {
            found, supported, ..
        } => {
            assert_eq!((*found, *supported), (99, SCHEMA_VERSION));
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("newer"));
}

/// Takes a journal back to schema version 4 (its rows stay).
const UNDO_V5: &str = "DROP TABLE adjustment_shares; DROP TABLE fill_shares; DROP TABLE order_legs; DROP TABLE strategy_changes; DROP TABLE book_states; ALTER TABLE paper_orders DROP COLUMN strategy;
    ALTER TABLE algo_states DROP COLUMN strategy; ALTER TABLE book_snapshots DROP COLUMN strategy;
    ALTER TABLE runs DROP COLUMN strategies;";

/// Takes a journal back to schema version 3 (its rows stay).
const UNDO_V4: &str = "DROP TABLE adjustment_shares; DROP TABLE fill_shares; DROP TABLE order_legs; DROP TABLE strategy_changes; DROP TABLE book_states; ALTER TABLE paper_orders DROP COLUMN strategy;
    ALTER TABLE algo_states DROP COLUMN strategy; ALTER TABLE book_snapshots DROP COLUMN strategy;
    ALTER TABLE runs DROP COLUMN strategies;
    DROP INDEX fills_strategy; ALTER TABLE fills DROP COLUMN strategy;
    ALTER TABLE intents DROP COLUMN strategy;";

#[test]
fn a_version_5_journal_gains_strategy_changes_and_keeps_its_book() {
    let (_dir, path) = temp_journal();
    let mut book_run = run();
    book_run.strategies = Some(vec!["a".into(), "b".into()]);
    {
        let mut j = Journal::open(&path).unwrap();
        j.start_run(&book_run).unwrap();
        j.record_intent_for(&intent("a1"), Some("a")).unwrap();
        j.record_fill(&fill("a1", "t1", "0.5", "100", "0", None))
            .unwrap();
        j.record_checkpoint_of(3_000, Some(2_000), &[], Some("{\"peak\":\"1\"}"))
            .unwrap();
    }
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "DROP TABLE adjustment_shares; DROP TABLE fill_shares; DROP TABLE order_legs;
         DROP TABLE strategy_changes; UPDATE meta SET value = '5' WHERE key = 'schema_version';",
    )
    .unwrap();
    drop(conn);
    let mut j = Journal::open(&path).unwrap();
    assert_eq!(j.schema_version().unwrap(), SCHEMA_VERSION);
    // Everything of the version 5 book is still there; nothing was added to it.
    assert_eq!(j.fills_of(Some("a")).unwrap().len(), 1);
    assert_eq!(j.book_state().unwrap().as_deref(), Some("{\"peak\":\"1\"}"));
    assert!(j.added_strategies().unwrap().is_empty());
    let run_id = j.runs().unwrap()[0].id;
    // An added strategy is listed in order and joins the run's strategies; a stop is kept
    // but adds nothing.
    for (action, strategy) in [("add", "c"), ("stop", "a"), ("add", "d")] {
        j.record_strategy_change(&StrategyChange {
            time: 4_000,
            run_id,
            action,
            strategy,
            request: &format!("{{\"id\":\"{strategy}\"}}"),
            token: "ops",
        })
        .unwrap();
    }
    assert_eq!(
        j.added_strategies().unwrap(),
        [
            ("c".to_string(), "{\"id\":\"c\"}".to_string()),
            ("d".to_string(), "{\"id\":\"d\"}".to_string())
        ]
    );
    assert_eq!(
        j.runs().unwrap()[0].strategies,
        Some(vec!["a".into(), "b".into(), "c".into(), "d".into()])
    );
    let bad = StrategyChange {
        time: 4_000,
        run_id,
        action: "add",
        strategy: "no spaces",
        request: "{}",
        token: "ops",
    };
    assert!(j.record_strategy_change(&bad).is_err());
    let bad_action = StrategyChange {
        action: "rename",
        strategy: "e",
        ..bad
    };
    assert!(j.record_strategy_change(&bad_action).is_err());
    drop(j);
    assert_eq!(
        Journal::open(&path).unwrap().schema_version().unwrap(),
        SCHEMA_VERSION
    );
}

#[test]
fn a_version_4_journal_gains_book_checkpoints_and_keeps_its_rows() {
    let (_dir, path) = temp_journal();
    {
        let mut j = Journal::open(&path).unwrap();
        j.start_run(&run()).unwrap();
        j.record_intent(&intent("old")).unwrap();
        let book = j.derive_book().unwrap();
        let saved = [("old".to_string(), "{}".to_string())];
        j.record_checkpoint(
            3_000,
            &book,
            Some(2_000),
            Some(("json", b"{}")),
            Some(&saved),
        )
        .unwrap();
    }
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(&format!(
        "{UNDO_V5} UPDATE meta SET value = '4' WHERE key = 'schema_version';"
    ))
    .unwrap();
    drop(conn);
    let mut j = Journal::open(&path).unwrap();
    assert_eq!(j.schema_version().unwrap(), SCHEMA_VERSION);
    // The single-algorithm session's rows are one algorithm's: no strategy anywhere.
    assert_eq!(j.runs().unwrap()[0].strategies, None);
    let recovery = j.recover(4_000, i64::MAX).unwrap();
    assert_eq!(recovery.algo_state.unwrap().data, b"{}");
    assert!(matches!(recovery.snapshot, SnapshotCheck::Matches));
    assert_eq!(
        j.paper_orders_by_strategy().unwrap(),
        [(None, "old".to_string(), "{}".to_string())]
    );
    assert!(j.algo_state_of("a", 4_000, i64::MAX).unwrap().is_none());
    assert!(j.book_state().unwrap().is_none());

    // A book's run names its strategies; its checkpoint has a part per strategy and the
    // account's, in one transaction.
    let mut book_run = run();
    book_run.strategies = Some(vec!["a".into(), "b".into()]);
    j.start_run(&book_run).unwrap();
    assert_eq!(
        j.runs().unwrap()[1].strategies,
        Some(vec!["a".to_string(), "b".to_string()])
    );
    j.record_intent_for(&intent("a1"), Some("a")).unwrap();
    j.record_fill(&fill("a1", "t1", "0.5", "100", "0", None))
        .unwrap();
    let mut a = Book::new("USDT", dec!(4950));
    a.positions.insert("BTC/USDT".into(), dec!(0.5));
    let b = Book::new("USDT", dec!(5000));
    let account = j.derive_book().unwrap();
    let orders_b = [("b1".to_string(), "{\"b\":1}".to_string())];
    j.record_intent_for(&intent("b1"), Some("b")).unwrap();
    let parts = [
        CheckpointPart {
            strategy: None,
            book: &account,
            algo_state: None,
            paper_orders: None,
        },
        CheckpointPart {
            strategy: Some("a"),
            book: &a,
            algo_state: Some(("json", b"[1]")),
            paper_orders: Some(&[]),
        },
        CheckpointPart {
            strategy: Some("b"),
            book: &b,
            algo_state: Some(("json", b"[2]")),
            paper_orders: Some(&orders_b),
        },
    ];
    j.record_checkpoint_of(5_000, Some(4_500), &parts, Some("{\"peak\":\"1\"}"))
        .unwrap();
    assert_eq!(j.snapshot_of("a").unwrap(), Some(a.clone()));
    assert_eq!(j.snapshot_of("b").unwrap(), Some(b));
    assert_eq!(
        j.algo_state_of("a", 6_000, i64::MAX).unwrap().unwrap().data,
        b"[1]"
    );
    assert_eq!(
        j.algo_state_of("b", 6_000, i64::MAX).unwrap().unwrap().data,
        b"[2]"
    );
    // The account's snapshot is the one the recovery checks against the fills.
    let recovery = j.recover(6_000, i64::MAX).unwrap();
    assert!(
        matches!(recovery.snapshot, SnapshotCheck::Matches),
        "{:?}",
        recovery.snapshot
    );
    assert_eq!(recovery.algo_state.unwrap().data, b"{}");
    // Every part's orders replace the last checkpoint's (the old session's too).
    assert_eq!(
        j.paper_orders_by_strategy().unwrap(),
        [(
            Some("b".to_string()),
            "b1".to_string(),
            "{\"b\":1}".to_string()
        )]
    );
    assert_eq!(j.book_state().unwrap().as_deref(), Some("{\"peak\":\"1\"}"));
    assert_eq!(j.feed_mark().unwrap(), Some(4_500));
    // Each strategy keeps its own last KEPT_ALGO_STATES states.
    for k in 0..KEPT_ALGO_STATES + 5 {
        let part = CheckpointPart {
            strategy: Some("a"),
            book: &a,
            algo_state: Some(("json", b"[3]")),
            paper_orders: None,
        };
        j.record_checkpoint_of(7_000 + k, None, &[part], None)
            .unwrap();
    }
    assert_eq!(
        j.algo_state_of("b", 9_000, i64::MAX).unwrap().unwrap().data,
        b"[2]"
    );
    let kept: i64 = j
        .conn_for_tests()
        .query_row(
            "SELECT COUNT(*) FROM algo_states WHERE strategy = 'a'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(kept, KEPT_ALGO_STATES);
    // Reopening a migrated journal migrates nothing.
    drop(j);
    assert_eq!(
        Journal::open(&path).unwrap().schema_version().unwrap(),
        SCHEMA_VERSION
    );
}

#[test]
fn a_version_3_journal_gains_strategy_tags_and_keeps_its_rows() {
    let (_dir, path) = temp_journal();
    {
        let mut j = Journal::open(&path).unwrap();
        j.start_run(&run()).unwrap();
        j.record_intent(&intent("old")).unwrap();
        j.record_fill(&fill("old", "t1", "0.2", "64000", "0.1", None))
            .unwrap();
    }
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(&format!(
        "{UNDO_V4} UPDATE meta SET value = '3' WHERE key = 'schema_version';"
    ))
    .unwrap();
    drop(conn);
    let mut j = Journal::open(&path).unwrap();
    assert_eq!(j.schema_version().unwrap(), SCHEMA_VERSION);
    // What the single-algorithm session wrote belongs to no strategy.
    let old = j.order("old").unwrap();
    assert_eq!((old.strategy, old.fills_quantity), (None, dec!(0.2)));
    assert_eq!(j.fills_of(None).unwrap().len(), 1);
    assert!(j.fills_of(Some("trend")).unwrap().is_empty());
    // A book's orders and their fills carry their strategy.
    j.record_intent_for(&intent("new"), Some("trend")).unwrap();
    j.record_fill(&fill("new", "t2", "0.5", "64000.10", "0.2", None))
        .unwrap();
    assert_eq!(j.order("new").unwrap().strategy.as_deref(), Some("trend"));
    let trend = j.fills_of(Some("trend")).unwrap();
    assert_eq!(trend.len(), 1);
    assert_eq!(
        (trend[0].2.client_order_id.as_str(), trend[0].2.quantity),
        ("new", dec!(0.5))
    );
    assert_eq!(j.fills().unwrap().len(), 2);
    // The derived book is the whole account, as before.
    assert_eq!(j.derive_book().unwrap().position("BTC/USDT"), dec!(0.7));
    let bad = j.record_intent_for(&intent("bad"), Some("no spaces"));
    assert!(
        matches!(bad, Err(JournalError::InvalidIntent { .. })),
        "{bad:?}"
    );
    assert!(j.order("bad").is_err());
    // Reopening a migrated journal migrates nothing.
    drop(j);
    assert_eq!(
        Journal::open(&path).unwrap().schema_version().unwrap(),
        SCHEMA_VERSION
    );
}

#[test]
fn a_version_1_journal_gains_the_control_actions_table() {
    let (_dir, path) = temp_journal();
    drop(Journal::open(&path).unwrap());
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(&format!(
        "{UNDO_V4} DROP TABLE control_actions; DROP TABLE paper_orders;
             UPDATE meta SET value = '1' WHERE key = 'schema_version';"
    ))
    .unwrap();
    drop(conn);
    let mut j = Journal::open(&path).unwrap();
    assert_eq!(j.schema_version().unwrap(), SCHEMA_VERSION);
    let run_id = j.start_run(&run()).unwrap();
    let params = serde_json::json!({"symbol": null});
    let result = serde_json::json!({"orders": []});
    j.record_control(&ControlRecord {
        time: 5,
        run_id,
        token: "ops",
        action: "flatten",
        params: &params,
        status: 200,
        result: &result,
    })
    .unwrap();
    let conn = Connection::open(&path).unwrap();
    let row: (String, String, i64, String) = conn
        .query_row(
            "SELECT token, action, status, params FROM control_actions",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(
        row,
        (
            "ops".into(),
            "flatten".into(),
            200,
            "{\"symbol\":null}".into()
        )
    );
}

#[test]
fn a_version_2_journal_gains_the_paper_orders_table() {
    let (_dir, path) = temp_journal();
    {
        let mut j = Journal::open(&path).unwrap();
        j.start_run(&run()).unwrap();
        j.record_intent(&intent("a")).unwrap();
    }
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        &format!(
            "{UNDO_V4} DROP TABLE paper_orders; UPDATE meta SET value = '2' WHERE key = 'schema_version';"
        ),
    )
    .unwrap();
    drop(conn);
    let mut j = Journal::open(&path).unwrap();
    assert_eq!(j.schema_version().unwrap(), SCHEMA_VERSION);
    assert!(j.paper_orders().unwrap().is_empty());
    let book = j.derive_book().unwrap();
    let saved = [("a".to_string(), "{}".to_string())];
    j.record_checkpoint(3_000, &book, Some(2_000), None, Some(&saved))
        .unwrap();
    assert_eq!(j.paper_orders().unwrap(), saved);
}

#[test]
fn each_checkpoint_replaces_the_saved_paper_orders() {
    let mut j = journal();
    for id in ["b", "a", "c"] {
        j.record_intent(&intent(id)).unwrap();
    }
    let book = j.derive_book().unwrap();
    let text = |id: &str| (id.to_string(), format!("{{\"order\":\"{id}\"}}"));
    // In the order the checkpoint listed them (the engine's).
    j.record_checkpoint(
        3_000,
        &book,
        Some(2_000),
        None,
        Some(&[text("b"), text("a")]),
    )
    .unwrap();
    assert_eq!(j.paper_orders().unwrap(), [text("b"), text("a")]);
    // A checkpoint without a list (an exchange session's) leaves the table alone…
    j.record_checkpoint(4_000, &book, Some(3_000), None, None)
        .unwrap();
    assert_eq!(j.paper_orders().unwrap(), [text("b"), text("a")]);
    // …one with a list replaces it: what is no longer open is gone.
    j.record_checkpoint(5_000, &book, Some(4_000), None, Some(&[text("c")]))
        .unwrap();
    assert_eq!(j.paper_orders().unwrap(), [text("c")]);
    j.record_checkpoint(6_000, &book, Some(5_000), None, Some(&[]))
        .unwrap();
    assert!(j.paper_orders().unwrap().is_empty());
}

#[test]
fn a_broken_schema_version_is_refused() {
    let (_dir, path) = temp_journal();
    drop(Journal::open(&path).unwrap());
    let conn = Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE meta SET value = 'x' WHERE key = 'schema_version'",
        [],
    )
    .unwrap();
    drop(conn);
    let err = Journal::open(&path).unwrap_err();
    assert!(err.to_string().contains("`x` is not a number"), "{err}");
}

#[test]
fn an_unreadable_path_is_an_open_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = Journal::open(dir.path().join("missing-dir/journal.sqlite")).unwrap_err();
    assert!(matches!(err, JournalError::Open { .. }), "{err}");
}

// ---- runs ------------------------------------------------------------------------------

#[test]
fn runs_are_recorded_and_ended() {
    let mut j = journal();
    let second = j.start_run(&run()).unwrap();
    j.end_run(second, 9_000, "ctrl-c").unwrap();
    let runs = j.runs().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1].stopped_at, Some(9_000));
    assert_eq!(runs[1].stop_reason.as_deref(), Some("ctrl-c"));
    assert_eq!(runs[0].symbols, vec!["BTC/USDT", "ETH/USDT"]);
    let err = j.end_run(99, 1, "x").unwrap_err();
    assert!(err.to_string().contains("no run with id 99"));
}

#[test]
fn a_run_in_another_cash_currency_is_refused() {
    let mut j = journal();
    let mut other = run();
    other.cash_currency = "EUR".into();
    let err = j.start_run(&other).unwrap_err();
    assert!(
        err.to_string().contains("USDT") && err.to_string().contains("EUR"),
        "{err}"
    );
}

#[test]
fn a_run_without_currency_algorithm_or_broker_is_refused() {
    let mut j = Journal::open_in_memory().unwrap();
    let mut bad = run();
    bad.cash_currency = " ".into();
    assert!(
        j.start_run(&bad)
            .unwrap_err()
            .to_string()
            .contains("cash currency")
    );
    let mut bad = run();
    bad.broker = String::new();
    assert!(
        j.start_run(&bad)
            .unwrap_err()
            .to_string()
            .contains("broker id")
    );
}

#[test]
fn an_intent_before_any_run_is_refused() {
    let mut j = Journal::open_in_memory().unwrap();
    let err = j.record_intent(&intent("rbt-a-1")).unwrap_err();
    assert!(err.to_string().contains("start_run"), "{err}");
}

// ---- client order ids ------------------------------------------------------------------

#[test]
fn client_order_ids_are_never_reused_across_reopen_and_prefixes() {
    let (_dir, path) = temp_journal();
    let mut seen = std::collections::HashSet::new();
    for prefix in ["r1", "r2", "r1"] {
        let mut j = Journal::open(&path).unwrap();
        for _ in 0..3 {
            let id = j.next_client_order_id(prefix).unwrap();
            assert!(id.starts_with(&format!("rbt-{prefix}-")));
            assert!(seen.insert(id.clone()), "{id} handed out twice");
        }
    }
    let mut j = Journal::open(&path).unwrap();
    assert_eq!(j.next_client_order_id("r1").unwrap(), "rbt-r1-10");
}

#[test]
fn bad_prefixes_are_refused() {
    let mut j = journal();
    for bad in ["", "a b", "ü", "x/y", &"p".repeat(40)] {
        let err = j.next_client_order_id(bad).unwrap_err();
        assert!(
            matches!(err, JournalError::InvalidPrefix(_)),
            "{bad}: {err}"
        );
    }
    // A refused prefix does not consume a number.
    assert_eq!(j.next_client_order_id("ok").unwrap(), "rbt-ok-1");
}

// ---- intents and their life ------------------------------------------------------------

#[test]
fn invalid_intents_are_refused_with_the_reason() {
    let mut j = journal();
    let cases: Vec<(OrderIntent, &str)> = vec![
        (
            OrderIntent {
                client_order_id: "has space".into(),
                ..intent("x")
            },
            "1 to 36 characters",
        ),
        (
            OrderIntent {
                client_order_id: "x".repeat(37),
                ..intent("x")
            },
            "1 to 36 characters",
        ),
        (
            OrderIntent {
                symbol: " ".into(),
                ..intent("a1")
            },
            "symbol is empty",
        ),
        (
            OrderIntent {
                quantity: dec!(0),
                ..intent("a2")
            },
            "quantity must be positive",
        ),
        (
            OrderIntent {
                quantity: dec!(-1),
                ..intent("a3")
            },
            "quantity must be positive",
        ),
        (
            OrderIntent {
                limit_price: None,
                ..intent("a4")
            },
            "needs a limit price",
        ),
        (
            OrderIntent {
                limit_price: Some(dec!(0)),
                ..intent("a5")
            },
            "limit price must be positive",
        ),
        (
            OrderIntent {
                order_type: OrderType::Market,
                ..intent("a6")
            },
            "a market order has no limit price",
        ),
        (
            OrderIntent {
                order_type: OrderType::StopLimit,
                ..intent("a7")
            },
            "needs a stop price",
        ),
        (
            OrderIntent {
                order_type: OrderType::Stop,
                limit_price: None,
                stop_price: Some(dec!(-1)),
                ..intent("a8")
            },
            "stop price must be positive",
        ),
        (
            OrderIntent {
                stop_price: Some(dec!(1)),
                ..intent("a9")
            },
            "a limit order has no stop price",
        ),
    ];
    for (bad, reason) in cases {
        let err = j.record_intent(&bad).unwrap_err();
        assert!(
            err.to_string().contains(reason),
            "expected `{reason}`: {err}"
        );
    }
    assert!(j.orders().unwrap().is_empty());
}

#[test]
fn a_client_order_id_is_recorded_once() {
    let mut j = journal();
    j.record_intent(&intent("rbt-a-1")).unwrap();
    let err = j.record_intent(&intent("rbt-a-1")).unwrap_err();
    assert!(
        matches!(err, JournalError::DuplicateClientOrderId(_)),
        "{err}"
    );
}

#[test]
fn an_order_goes_intent_sent_acknowledged_final() {
    let mut j = journal();
    j.record_intent(&intent("rbt-a-1")).unwrap();
    let o = j.order("rbt-a-1").unwrap();
    assert_eq!(o.state, IntentState::Intent);
    assert_eq!(o.limit_price, Some(dec!(64000.10)));
    assert_eq!(o.resume_from(), 2_000);
    j.mark_sent("rbt-a-1", 2_100).unwrap();
    assert_eq!(j.order("rbt-a-1").unwrap().state, IntentState::Sent);
    assert_eq!(j.order("rbt-a-1").unwrap().resume_from(), 2_100);
    j.record_ack("rbt-a-1", "777", 2_200).unwrap();
    j.record_ack("rbt-a-1", "777", 2_300).unwrap(); // repeated ack: no-op
    let o = j.order("rbt-a-1").unwrap();
    assert_eq!(
        (o.state, o.exchange_id.as_deref(), o.acked_at),
        (IntentState::Acknowledged, Some("777"), Some(2_200))
    );
    assert_eq!(o.status.as_deref(), Some("accepted"));
    j.record_status(&OrderUpdate {
        client_order_id: "rbt-a-1".into(),
        time: 3_000,
        status: OrderStatus::PartiallyFilled,
        filled_quantity: dec!(0.2),
        exchange_id: None,
        reason: None,
    })
    .unwrap();
    assert_eq!(j.order("rbt-a-1").unwrap().remaining(), dec!(0.3));
    j.record_status(&OrderUpdate {
        client_order_id: "rbt-a-1".into(),
        time: 4_000,
        status: OrderStatus::Cancelled,
        filled_quantity: dec!(0.2),
        exchange_id: Some("777".into()),
        reason: Some("user".into()),
    })
    .unwrap();
    let o = j.order("rbt-a-1").unwrap();
    assert_eq!(
        (o.state, o.status.as_deref(), o.remaining()),
        (IntentState::Final, Some("cancelled"), dec!(0))
    );
    assert_eq!(o.reason.as_deref(), Some("user"));
    let updates: i64 = j
        .conn
        .query_row(
            "SELECT COUNT(*) FROM order_updates WHERE client_order_id = 'rbt-a-1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(updates, 4, "sent, ack, two statuses");
}

#[test]
fn a_status_with_exchange_id_acknowledges_an_unacknowledged_order() {
    let mut j = journal();
    j.record_intent(&intent("rbt-a-1")).unwrap();
    j.record_status(&OrderUpdate {
        client_order_id: "rbt-a-1".into(),
        time: 3_000,
        status: OrderStatus::Accepted,
        filled_quantity: dec!(0),
        exchange_id: Some("55".into()),
        reason: None,
    })
    .unwrap();
    let o = j.order("rbt-a-1").unwrap();
    assert_eq!(
        (o.state, o.exchange_id.as_deref()),
        (IntentState::Acknowledged, Some("55"))
    );
}

#[test]
fn a_rejection_makes_the_intent_final_without_an_ack() {
    let mut j = journal();
    j.record_intent(&intent("rbt-a-1")).unwrap();
    j.mark_sent("rbt-a-1", 2_100).unwrap();
    j.record_status(&OrderUpdate {
        client_order_id: "rbt-a-1".into(),
        time: 2_200,
        status: OrderStatus::Rejected,
        filled_quantity: dec!(0),
        exchange_id: None,
        reason: Some("insufficient balance".into()),
    })
    .unwrap();
    let rec = j.recover(3_000, 1_000).unwrap();
    assert!(rec.unresolved.is_empty() && rec.open_orders.is_empty());
    assert_eq!(
        j.order("rbt-a-1").unwrap().status.as_deref(),
        Some("rejected")
    );
}

#[test]
fn bad_transitions_are_refused() {
    let mut j = journal();
    j.record_intent(&intent("rbt-a-1")).unwrap();
    assert!(matches!(
        j.mark_sent("nope", 1).unwrap_err(),
        JournalError::UnknownOrder(_)
    ));
    assert!(matches!(
        j.record_ack("nope", "1", 1).unwrap_err(),
        JournalError::UnknownOrder(_)
    ));
    let err = j.record_ack("rbt-a-1", " ", 1).unwrap_err();
    assert!(
        err.to_string().contains("exchange order id is empty"),
        "{err}"
    );
    j.record_ack("rbt-a-1", "777", 2_200).unwrap();
    let err = j.record_ack("rbt-a-1", "778", 2_300).unwrap_err();
    assert!(
        err.to_string().contains("777") && err.to_string().contains("778"),
        "{err}"
    );
    let err = j.mark_sent("rbt-a-1", 2_400).unwrap_err();
    assert!(err.to_string().contains("already acknowledged"), "{err}");

    let update = |status, filled: &str| OrderUpdate {
        client_order_id: "rbt-a-1".into(),
        time: 3_000,
        status,
        filled_quantity: d(filled),
        exchange_id: None,
        reason: None,
    };
    let err = j
        .record_status(&update(OrderStatus::PartiallyFilled, "0.6"))
        .unwrap_err();
    assert!(err.to_string().contains("outside 0..=0.5"), "{err}");
    let err = j
        .record_status(&update(OrderStatus::PartiallyFilled, "-0.1"))
        .unwrap_err();
    assert!(err.to_string().contains("outside"), "{err}");
    let err = j
        .record_status(&update(OrderStatus::Filled, "0.4"))
        .unwrap_err();
    assert!(err.to_string().contains("filled with 0.4 of 0.5"), "{err}");
    j.record_status(&update(OrderStatus::PartiallyFilled, "0.3"))
        .unwrap();
    let err = j
        .record_status(&update(OrderStatus::PartiallyFilled, "0.2"))
        .unwrap_err();
    assert!(err.to_string().contains("below the 0.3"), "{err}");
    let err = j
        .record_status(&OrderUpdate {
            exchange_id: Some("999".into()),
            ..update(OrderStatus::PartiallyFilled, "0.3")
        })
        .unwrap_err();
    assert!(err.to_string().contains("999"), "{err}");
    j.record_status(&update(OrderStatus::Filled, "0.5"))
        .unwrap();
    let err = j
        .record_status(&update(OrderStatus::Accepted, "0.5"))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("final (filled) and cannot become accepted"),
        "{err}"
    );
    assert!(matches!(
        j.record_status(&OrderUpdate {
            client_order_id: "nope".into(),
            ..update(OrderStatus::Accepted, "0")
        })
        .unwrap_err(),
        JournalError::UnknownOrder(_)
    ));
}

// ---- fills -----------------------------------------------------------------------------

#[test]
fn fills_are_idempotent_and_conflicting_replays_are_refused() {
    let mut j = journal();
    j.record_intent(&intent("rbt-a-1")).unwrap();
    assert!(
        j.record_fill(&fill(
            "rbt-a-1",
            "t1",
            "0.2",
            "64000.10",
            "0.0002",
            Some("BTC")
        ))
        .unwrap()
    );
    assert!(
        !j.record_fill(&fill(
            "rbt-a-1",
            "t1",
            "0.2",
            "64000.10",
            "0.0002",
            Some("BTC")
        ))
        .unwrap()
    );
    // The same value written differently is the same fill.
    assert!(
        !j.record_fill(&fill(
            "rbt-a-1",
            "t1",
            "0.20",
            "64000.100",
            "0.00020",
            Some("BTC")
        ))
        .unwrap()
    );
    let err = j
        .record_fill(&fill(
            "rbt-a-1",
            "t1",
            "0.3",
            "64000.10",
            "0.0002",
            Some("BTC"),
        ))
        .unwrap_err();
    assert!(matches!(err, JournalError::FillConflict { .. }), "{err}");
    assert!(
        err.to_string().contains("0.2 @ 64000.10") && err.to_string().contains("0.3 @"),
        "{err}"
    );
    let o = j.order("rbt-a-1").unwrap();
    assert_eq!(o.fills_quantity, dec!(0.2));
    // A fill implies the order reached the book.
    assert_eq!(
        (o.state, o.status.as_deref()),
        (IntentState::Acknowledged, Some("partially_filled"))
    );
    assert!(
        j.record_fill(&fill("rbt-a-1", "t2", "0.3", "64000", "0", None))
            .unwrap()
    );
    let o = j.order("rbt-a-1").unwrap();
    assert_eq!(
        (o.state, o.status.as_deref()),
        (IntentState::Final, Some("filled"))
    );
    assert_eq!(j.fills().unwrap().len(), 2);
}

#[test]
fn invalid_fills_are_refused_with_the_reason() {
    let mut j = journal();
    j.record_intent(&intent("rbt-a-1")).unwrap();
    let cases = [
        (
            fill("rbt-a-1", " ", "0.1", "1", "0", None),
            "trade id is empty",
        ),
        (
            fill("rbt-a-1", "t", "0", "1", "0", None),
            "quantity must be positive",
        ),
        (
            fill("rbt-a-1", "t", "0.1", "0", "0", None),
            "price must be positive",
        ),
        (
            fill("rbt-a-1", "t", "0.1", "1", "-0.01", None),
            "fee must not be negative",
        ),
        (
            fill("rbt-a-1", "t", "0.6", "1", "0", None),
            "fills would total 0.6, more than the order's 0.5",
        ),
    ];
    for (bad, reason) in cases {
        let err = j.record_fill(&bad).unwrap_err();
        assert!(
            err.to_string().contains(reason),
            "expected `{reason}`: {err}"
        );
    }
    let err = j
        .record_fill(&fill("nope", "t", "0.1", "1", "0", None))
        .unwrap_err();
    assert!(matches!(err, JournalError::UnknownOrder(_)));
    assert!(j.fills().unwrap().is_empty());
}

#[test]
fn a_late_fill_of_a_cancelled_order_keeps_it_cancelled() {
    let mut j = journal();
    j.record_intent(&intent("rbt-a-1")).unwrap();
    j.record_status(&OrderUpdate {
        client_order_id: "rbt-a-1".into(),
        time: 3_000,
        status: OrderStatus::Cancelled,
        filled_quantity: dec!(0.1),
        exchange_id: Some("1".into()),
        reason: None,
    })
    .unwrap();
    j.record_fill(&fill("rbt-a-1", "t1", "0.1", "100", "0", None))
        .unwrap();
    let o = j.order("rbt-a-1").unwrap();
    assert_eq!(
        (o.state, o.status.as_deref()),
        (IntentState::Final, Some("cancelled"))
    );
}

// ---- the book --------------------------------------------------------------------------

#[test]
fn the_book_takes_fees_from_cash_the_base_asset_or_other_assets() {
    let mut j = journal();
    j.record_intent(&intent("rbt-a-1")).unwrap();
    j.record_intent(&OrderIntent {
        side: OrderSide::Sell,
        ..intent("rbt-a-2")
    })
    .unwrap();
    j.record_fill(&fill("rbt-a-1", "t1", "0.5", "100", "0.0005", Some("BTC")))
        .unwrap();
    j.record_fill(&fill("rbt-a-2", "t2", "0.1", "110", "0.011", Some("USDT")))
        .unwrap();
    j.record_fill(&fill("rbt-a-2", "t3", "0.1", "120", "0.02", Some("BNB")))
        .unwrap();
    j.record_fill(&fill("rbt-a-2", "t4", "0.1", "130", "0.013", None))
        .unwrap();
    let book = j.derive_book().unwrap();
    // 10000 − 50 + 11 + 12 + 13 − 0.011 − 0.013
    assert_eq!(book.cash, dec!(9985.976));
    assert_eq!(book.position("BTC/USDT"), dec!(0.1995));
    assert_eq!(book.other_fees.get("BNB"), Some(&dec!(0.02)));
}

#[test]
fn adjustments_move_the_book_and_need_a_run() {
    let mut empty = Journal::open_in_memory().unwrap();
    let adj = BookAdjustment {
        target: AdjustmentTarget::Cash,
        delta: dec!(1),
        reason: "x".into(),
    };
    assert!(
        empty
            .record_adjustments(1, std::slice::from_ref(&adj))
            .unwrap_err()
            .to_string()
            .contains("start_run")
    );
    assert_eq!(empty.derive_book().unwrap(), Book::default());

    let mut j = journal();
    j.record_adjustments(
        10,
        &[
            BookAdjustment {
                target: AdjustmentTarget::Position("ETH/USDT".into()),
                delta: dec!(2.5),
                reason: "sync".into(),
            },
            BookAdjustment {
                target: AdjustmentTarget::Cash,
                delta: dec!(-0.37),
                reason: "fees while away".into(),
            },
        ],
    )
    .unwrap();
    let book = j.derive_book().unwrap();
    assert_eq!(book.position("ETH/USDT"), dec!(2.5));
    assert_eq!(book.cash, dec!(9999.63));
}

#[test]
fn the_snapshot_is_checked_against_the_fills() {
    let mut j = journal();
    assert_eq!(j.recover(0, 1).unwrap().snapshot, SnapshotCheck::NoSnapshot);
    j.record_intent(&intent("rbt-a-1")).unwrap();
    j.record_fill(&fill("rbt-a-1", "t1", "0.5", "100", "0", None))
        .unwrap();
    let mut engine = Book::new("USDT", dec!(9950.00));
    engine.positions.insert("BTC/USDT".into(), dec!(0.50));
    j.record_snapshot(6_000, &engine).unwrap();
    // A fill after the snapshot does not count against it.
    j.record_intent(&intent("rbt-a-2")).unwrap();
    j.record_fill(&fill("rbt-a-2", "t2", "0.5", "100", "0", None))
        .unwrap();
    assert_eq!(
        j.recover(7_000, 1).unwrap().snapshot,
        SnapshotCheck::Matches
    );

    engine.cash = dec!(9000);
    j.record_snapshot(8_000, &engine).unwrap();
    match j.recover(9_000, 1).unwrap().snapshot {
        SnapshotCheck::Mismatch { snapshot, derived } => {
            assert_eq!(snapshot.cash, dec!(9000));
            assert_eq!(derived.cash, dec!(9900));
        }
        other => panic!("{other:?}"),
    }
}

// ---- algorithm state, breakers, reconciliation -----------------------------------------

#[test]
fn the_last_algorithm_state_is_restored_with_a_stale_flag() {
    let mut j = journal();
    assert!(j.recover(0, 10).unwrap().algo_state.is_none());
    j.record_algo_state(1_000, "pickle", b"\x80\x04first")
        .unwrap();
    j.record_algo_state(2_000, "json", b"{\"n\":2}").unwrap();
    let fresh = j.recover(2_010, 10).unwrap().algo_state.unwrap();
    assert_eq!(
        (
            fresh.format.as_str(),
            fresh.data.as_slice(),
            fresh.age_ns,
            fresh.stale
        ),
        ("json", &b"{\"n\":2}"[..], 10, false)
    );
    let stale = j.recover(2_011, 10).unwrap().algo_state.unwrap();
    assert!(stale.stale);
    let err = j.record_algo_state(3_000, "", b"x").unwrap_err();
    assert!(err.to_string().contains("format tag is empty"));
    for t in 0..20 {
        j.record_algo_state(10_000 + t, "json", b"{}").unwrap();
    }
    let kept: i64 = j
        .conn
        .query_row("SELECT COUNT(*) FROM algo_states", [], |r| r.get(0))
        .unwrap();
    assert_eq!(kept, KEPT_ALGO_STATES, "only the last few states are kept");
}

#[test]
fn a_breaker_trip_stays_active_until_reset() {
    let (_dir, path) = temp_journal();
    let trip = TripRecord {
        time: 5,
        breaker: "drawdown".into(),
        reason: "drawdown 0.2".into(),
        detail: serde_json::json!({"peak": "100"}),
    };
    {
        let mut j = Journal::open(&path).unwrap();
        assert_eq!(j.active_trip().unwrap(), None);
        j.record_breaker_trip(&trip).unwrap();
    }
    let mut j = Journal::open(&path).unwrap();
    assert_eq!(j.recover(10, 1).unwrap().breaker_trip, Some(trip.clone()));
    j.record_breaker_reset(20, "operator").unwrap();
    assert_eq!(j.active_trip().unwrap(), None);
    j.set_breaker_mark("peak_equity", 30, dec!(123.45)).unwrap();
    j.set_breaker_mark("peak_equity", 40, dec!(130)).unwrap();
    assert_eq!(j.breaker_marks().unwrap()["peak_equity"], (40, dec!(130)));
}

#[test]
fn reconciliation_reports_are_kept() {
    let mut j = journal();
    j.record_reconciliation(5, "clean", "{}").unwrap();
    j.record_reconciliation(6, "halted", "{\"critical\":1}")
        .unwrap();
    let all = j.reconciliations().unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(
        all[1],
        (6, "halted".to_string(), "{\"critical\":1}".to_string())
    );
}

#[test]
fn recover_sorts_orders_into_unresolved_and_open_and_groups_fills() {
    let mut j = journal();
    for id in ["rbt-a-1", "rbt-a-2", "rbt-a-3", "rbt-a-4"] {
        j.record_intent(&intent(id)).unwrap();
    }
    j.mark_sent("rbt-a-2", 2_500).unwrap();
    j.record_ack("rbt-a-3", "3", 2_600).unwrap();
    j.record_fill(&fill("rbt-a-3", "t9", "0.1", "100", "0", None))
        .unwrap();
    j.record_fill(&fill("rbt-a-4", "t10", "0.5", "100", "0", None))
        .unwrap();
    let rec = j.recover(10_000, 1_000).unwrap();
    let ids = |orders: &[JournaledOrder]| {
        orders
            .iter()
            .map(|o| o.client_order_id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&rec.unresolved), vec!["rbt-a-1", "rbt-a-2"]);
    assert_eq!(ids(&rec.open_orders), vec!["rbt-a-3"]);
    assert_eq!(rec.open_orders[0].remaining(), dec!(0.4));
    assert_eq!(rec.fills["rbt-a-3"].len(), 1);
    assert_eq!(rec.last_trade_ids["BTC/USDT"], "t10");
    assert_eq!(rec.book.position("BTC/USDT"), dec!(0.6));
    assert_eq!(rec.last_run.unwrap().broker, "ccxt:binance");
}

// ---- crashes ---------------------------------------------------------------------------

const CRASH_MODE: &str = "RUSTYBT_JOURNAL_CRASH_MODE";
const CRASH_PATH: &str = "RUSTYBT_JOURNAL_CRASH_PATH";

/// Writes, then aborts at the point the mode names. Runs only as the child of `crash_at`.
#[test]
#[ignore = "child process of the crash tests (run by them with RUSTYBT_JOURNAL_CRASH_MODE)"]
fn crash_child() {
    let (Ok(mode), Ok(path)) = (std::env::var(CRASH_MODE), std::env::var(CRASH_PATH)) else {
        panic!("run by the crash tests only");
    };
    let mut j = Journal::open(&path).unwrap();
    j.start_run(&run()).unwrap();
    // A first order, complete: filled and final.
    let first = j.next_client_order_id("c").unwrap();
    j.record_intent(&intent(&first)).unwrap();
    j.mark_sent(&first, 2_100).unwrap();
    j.record_ack(&first, "100", 2_200).unwrap();
    j.record_fill(&fill(&first, "t1", "0.5", "100", "0.05", Some("USDT")))
        .unwrap();
    j.record_snapshot(2_300, &j.derive_book().unwrap()).unwrap();

    let second = j.next_client_order_id("c").unwrap();
    match mode.as_str() {
        "before_intent_commit" => {
            let tx = j.conn.transaction().unwrap();
            tx.execute(
                "INSERT INTO intents (client_order_id, run_id, symbol, side, quantity, order_type, tif, created_at, state, updated_at)
                 VALUES (?1, 1, 'BTC/USDT', 'buy', '1', 'market', 'gtc', 3000, 'intent', 3000)",
                params![second],
            )
            .unwrap();
            std::process::abort();
        }
        "after_intent_before_send" => {
            j.record_intent(&intent(&second)).unwrap();
            std::process::abort();
        }
        "after_send_before_ack" => {
            j.record_intent(&intent(&second)).unwrap();
            j.mark_sent(&second, 3_100).unwrap();
            std::process::abort();
        }
        "after_ack" => {
            j.record_intent(&intent(&second)).unwrap();
            j.mark_sent(&second, 3_100).unwrap();
            j.record_ack(&second, "200", 3_200).unwrap();
            std::process::abort();
        }
        "during_fill" => {
            j.record_intent(&intent(&second)).unwrap();
            j.mark_sent(&second, 3_100).unwrap();
            j.record_ack(&second, "200", 3_200).unwrap();
            let tx = j.conn.transaction().unwrap();
            tx.execute(
                "INSERT INTO fills (client_order_id, trade_id, symbol, side, quantity, price, fee, time)
                 VALUES (?1, 't2', 'BTC/USDT', 'buy', '0.5', '100', '0', 4000)",
                params![second],
            )
            .unwrap();
            std::process::abort();
        }
        "after_fill" => {
            j.record_intent(&intent(&second)).unwrap();
            j.mark_sent(&second, 3_100).unwrap();
            j.record_ack(&second, "200", 3_200).unwrap();
            j.record_fill(&fill(&second, "t2", "0.2", "110", "0", None))
                .unwrap();
            std::process::abort();
        }
        "grouped" => {
            // A paper session's grouping: the second order and a checkpoint are one commit;
            // the third order's writes are in the open group when the process dies.
            j.set_grouped(true).unwrap();
            j.record_intent(&intent(&second)).unwrap();
            j.mark_sent(&second, 3_100).unwrap();
            j.record_ack(&second, "200", 3_200).unwrap();
            j.record_fill(&fill(&second, "t2", "0.2", "110", "0", None))
                .unwrap();
            let book = j.derive_book().unwrap();
            j.record_checkpoint(3_300, &book, Some(3_000), Some(("json", b"{}")), None)
                .unwrap();
            j.commit_group().unwrap();
            let third = j.next_client_order_id("c").unwrap();
            j.record_intent(&intent(&third)).unwrap();
            j.mark_sent(&third, 4_100).unwrap();
            j.record_ack(&third, "300", 4_200).unwrap();
            j.record_fill(&fill(&third, "t3", "0.5", "120", "0", None))
                .unwrap();
            let book = j.derive_book().unwrap();
            j.record_checkpoint(4_300, &book, Some(4_000), None, None)
                .unwrap();
            std::process::abort();
        }
        other => panic!("unknown crash mode {other}"),
    }
}

/// Runs `crash_child` in a child process that aborts at `mode`, then reopens the journal.
fn crash_at(mode: &str) -> (tempfile::TempDir, Journal) {
    let (dir, path) = temp_journal();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "live::journal::tests::crash_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_MODE, mode)
        .env(CRASH_PATH, &path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(
        !status.success(),
        "the child must die by abort, not finish ({mode})"
    );
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(libc::SIGABRT),
            "child of {mode}: {status:?}"
        );
    }
    let journal = Journal::open(&path).unwrap();
    (dir, journal)
}

fn assert_first_order_intact(rec: &Recovery) {
    assert_eq!(rec.fills["rbt-c-1"].len(), 1);
    assert_eq!(rec.snapshot, SnapshotCheck::Matches);
}

#[test]
fn crash_before_the_intent_commits_leaves_no_trace_of_it() {
    let (_dir, mut j) = crash_at("before_intent_commit");
    let rec = j.recover(10_000, 1_000).unwrap();
    assert_first_order_intact(&rec);
    assert!(rec.unresolved.is_empty() && rec.open_orders.is_empty());
    assert_eq!(j.orders().unwrap().len(), 1);
    assert_eq!(rec.book.cash, dec!(9949.95));
    assert_eq!(rec.book.position("BTC/USDT"), dec!(0.5));
    // The id the child drew is never handed out again.
    assert_eq!(j.next_client_order_id("c").unwrap(), "rbt-c-3");
}

#[test]
fn crash_after_the_intent_before_the_send_leaves_it_unresolved() {
    let (_dir, mut j) = crash_at("after_intent_before_send");
    let rec = j.recover(10_000, 1_000).unwrap();
    assert_first_order_intact(&rec);
    assert_eq!(rec.unresolved.len(), 1);
    let o = &rec.unresolved[0];
    assert_eq!(
        (
            o.client_order_id.as_str(),
            o.state,
            o.sent_at,
            o.resume_from()
        ),
        ("rbt-c-2", IntentState::Intent, None, 2_000)
    );
    assert_eq!(o.quantity, dec!(0.5));
    assert_eq!(j.next_client_order_id("c").unwrap(), "rbt-c-3");
}

#[test]
fn crash_after_the_send_before_the_ack_leaves_it_unresolved_with_its_send_time() {
    let (_dir, mut j) = crash_at("after_send_before_ack");
    let rec = j.recover(10_000, 1_000).unwrap();
    assert_first_order_intact(&rec);
    assert_eq!(rec.unresolved.len(), 1);
    assert_eq!(
        (rec.unresolved[0].state, rec.unresolved[0].resume_from()),
        (IntentState::Sent, 3_100)
    );
    assert!(rec.open_orders.is_empty());
    // The lookup found it acknowledged and partly filled: the journal catches up, once.
    j.record_status(&OrderUpdate {
        client_order_id: "rbt-c-2".into(),
        time: 11_000,
        status: OrderStatus::PartiallyFilled,
        filled_quantity: dec!(0.1),
        exchange_id: Some("200".into()),
        reason: None,
    })
    .unwrap();
    assert!(
        j.record_fill(&fill("rbt-c-2", "t2", "0.1", "100", "0", None))
            .unwrap()
    );
    assert!(
        !j.record_fill(&fill("rbt-c-2", "t2", "0.1", "100", "0", None))
            .unwrap()
    );
    let rec = j.recover(12_000, 1_000).unwrap();
    assert!(rec.unresolved.is_empty());
    assert_eq!(rec.open_orders.len(), 1);
    assert_eq!(rec.open_orders[0].remaining(), dec!(0.4));
}

#[test]
fn crash_after_the_ack_leaves_an_open_order() {
    let (_dir, j) = crash_at("after_ack");
    let rec = j.recover(10_000, 1_000).unwrap();
    assert_first_order_intact(&rec);
    assert!(rec.unresolved.is_empty());
    assert_eq!(rec.open_orders.len(), 1);
    assert_eq!(rec.open_orders[0].exchange_id.as_deref(), Some("200"));
    assert_eq!(rec.book.position("BTC/USDT"), dec!(0.5));
}

#[test]
fn crash_during_a_fill_write_loses_only_that_fill() {
    let (_dir, j) = crash_at("during_fill");
    let rec = j.recover(10_000, 1_000).unwrap();
    assert_first_order_intact(&rec);
    assert!(!rec.fills.contains_key("rbt-c-2"));
    assert_eq!(rec.open_orders.len(), 1);
    assert_eq!(rec.book.position("BTC/USDT"), dec!(0.5));
    assert_eq!(rec.book.cash, dec!(9949.95));
}

#[test]
fn crash_after_a_fill_keeps_it_once() {
    let (_dir, mut j) = crash_at("after_fill");
    let rec = j.recover(10_000, 1_000).unwrap();
    assert_first_order_intact(&rec);
    assert_eq!(rec.fills["rbt-c-2"].len(), 1);
    assert_eq!(rec.book.position("BTC/USDT"), dec!(0.7));
    assert_eq!(rec.book.cash, dec!(9927.95));
    assert_eq!(rec.open_orders[0].remaining(), dec!(0.3));
    // Replaying the fills fetched after the restart changes nothing.
    assert!(
        !j.record_fill(&fill("rbt-c-2", "t2", "0.2", "110", "0", None))
            .unwrap()
    );
    assert_eq!(j.derive_book().unwrap(), rec.book);
    // A snapshot taken from the derived book stays consistent.
    j.record_snapshot(11_000, &rec.book).unwrap();
    assert_eq!(
        j.recover(12_000, 1_000).unwrap().snapshot,
        SnapshotCheck::Matches
    );
}

// ---- property: fills fold into the book ------------------------------------------------

#[derive(Debug, Clone)]
struct GenFill {
    symbol: usize,
    buy: bool,
    quantity: i64,
    quantity_scale: u32,
    price: i64,
    price_scale: u32,
    fee: i64,
    fee_asset: usize,
    order: usize,
}

const SYMBOLS: [&str; 3] = ["BTC/USDT", "ETH/USDT", "SPOT"];

fn gen_fill() -> impl Strategy<Value = GenFill> {
    (
        0usize..3,
        any::<bool>(),
        1i64..10_000_000,
        0u32..9,
        1i64..10_000_000,
        0u32..6,
        0i64..10_000,
        0usize..4,
        0usize..6,
    )
        .prop_map(
            |(symbol, buy, quantity, quantity_scale, price, price_scale, fee, fee_asset, order)| {
                GenFill {
                    symbol,
                    buy,
                    quantity,
                    quantity_scale,
                    price,
                    price_scale,
                    fee,
                    fee_asset,
                    order,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any sequence of fills, with some replayed, derives the same positions and cash as a
    /// plain fold over the distinct fills.
    #[test]
    fn fills_with_replays_derive_the_reference_book(
        fills in prop::collection::vec(gen_fill(), 1..40),
        replays in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
    ) {
        let mut j = journal();
        // Orders: (symbol, side, order slot) → the quantity is the sum of its fills.
        let mut orders: BTreeMap<(usize, bool, usize), Decimal> = BTreeMap::new();
        for f in &fills {
            *orders.entry((f.symbol, f.buy, f.order)).or_default() += Decimal::new(f.quantity, f.quantity_scale);
        }
        let order_id = |key: &(usize, bool, usize)| format!("rbt-p-{}-{}-{}", key.0, key.1 as u8, key.2);
        for (key, quantity) in &orders {
            j.record_intent(&OrderIntent {
                client_order_id: order_id(key),
                symbol: SYMBOLS[key.0].into(),
                side: if key.1 { OrderSide::Buy } else { OrderSide::Sell },
                quantity: *quantity,
                order_type: OrderType::Market,
                limit_price: None,
                stop_price: None,
                time_in_force: TimeInForce::Ioc,
                created_at: 1,
            }).unwrap();
        }
        let record = |f: &GenFill, index: usize| FillRecord {
            client_order_id: order_id(&(f.symbol, f.buy, f.order)),
            trade_id: format!("t{index}"),
            quantity: Decimal::new(f.quantity, f.quantity_scale),
            price: Decimal::new(f.price, f.price_scale),
            fee: Decimal::new(f.fee, 4),
            fee_asset: [None, Some("USDT"), Some("BASE"), Some("BNB")][f.fee_asset].map(|a| {
                if a == "BASE" { SYMBOLS[f.symbol].split('/').next().unwrap().to_string() } else { a.to_string() }
            }),
            time: index as i64,
        };
        let mut sequence: Vec<usize> = (0..fills.len()).collect();
        for r in &replays {
            let at = r.index(sequence.len() + 1);
            sequence.insert(at.min(sequence.len()), r.index(fills.len()));
        }
        let mut recorded = std::collections::HashSet::new();
        for &i in &sequence {
            // Replays of a fill not yet seen are just its first recording.
            let new = j.record_fill(&record(&fills[i], i)).unwrap();
            prop_assert_eq!(new, recorded.insert(i));
        }

        // Reference: a plain fold over the distinct fills.
        let mut cash = dec!(10000);
        let mut positions: BTreeMap<String, Decimal> = BTreeMap::new();
        let mut other: BTreeMap<String, Decimal> = BTreeMap::new();
        for (i, f) in fills.iter().enumerate() {
            let r = record(f, i);
            let symbol = SYMBOLS[f.symbol].to_string();
            let signed = if f.buy { r.quantity } else { -r.quantity };
            *positions.entry(symbol.clone()).or_default() += signed;
            cash -= signed * r.price;
            match r.fee_asset.as_deref() {
                None | Some("USDT") => cash -= r.fee,
                Some(asset) if symbol.starts_with(&format!("{asset}/")) => {
                    *positions.entry(symbol.clone()).or_default() -= r.fee
                }
                Some(asset) => *other.entry(asset.to_string()).or_default() += r.fee,
            }
        }
        positions.retain(|_, q| !q.is_zero());
        other.retain(|_, q| !q.is_zero());
        let book = j.derive_book().unwrap();
        prop_assert_eq!(book.cash, cash);
        prop_assert_eq!(&book.positions, &positions);
        prop_assert_eq!(&book.other_fees, &other);
        prop_assert_eq!(j.fills().unwrap().len(), fills.len());
        let rec = j.recover(100, 10).unwrap();
        prop_assert_eq!(rec.book, book);
    }
}

// ---- grouped commits (paper sessions) ------------------------------------------------------

#[test]
fn a_crash_loses_the_open_group_and_keeps_every_committed_one() {
    let (_dir, j) = crash_at("grouped");
    let rec = j.recover(5_000, i64::MAX).unwrap();
    assert_first_order_intact(&rec);
    // The committed group: the second order, filled, and its checkpoint.
    assert_eq!(rec.fills["rbt-c-2"].len(), 1);
    assert_eq!(j.feed_mark().unwrap(), Some(3_000));
    // The open group left nothing: no third order, no fill past the committed feed mark,
    // and the order sequence is back where the committed journal left it.
    assert!(matches!(
        j.order("rbt-c-3"),
        Err(JournalError::UnknownOrder(_))
    ));
    assert!(!rec.fills.contains_key("rbt-c-3"));
    let mut j = j;
    assert_eq!(j.next_client_order_id("c").unwrap(), "rbt-c-3");
}

#[test]
fn a_group_is_invisible_to_other_connections_until_it_commits() {
    let (_dir, path) = temp_journal();
    let mut j = Journal::open(&path).unwrap();
    j.start_run(&run()).unwrap();
    let reader = Journal::open(&path).unwrap();
    j.set_grouped(true).unwrap();
    j.record_intent(&intent("rbt-a-1")).unwrap();
    assert!(j.group_open());
    assert_eq!(j.order("rbt-a-1").unwrap().state, IntentState::Intent);
    assert!(reader.orders().unwrap().is_empty(), "not committed yet");
    j.commit_group().unwrap();
    assert!(!j.group_open());
    assert_eq!(reader.orders().unwrap().len(), 1);
    // Ungrouped again: each write commits on its own.
    j.set_grouped(false).unwrap();
    j.mark_sent("rbt-a-1", 2_100).unwrap();
    assert!(!j.group_open());
    assert_eq!(reader.order("rbt-a-1").unwrap().state, IntentState::Sent);
}

#[test]
fn a_refused_write_inside_a_group_takes_back_only_itself() {
    let mut j = journal();
    j.set_grouped(true).unwrap();
    j.record_intent(&intent("rbt-a-1")).unwrap();
    j.mark_sent("rbt-a-1", 2_100).unwrap();
    // Refused half way (the order exists): its savepoint is rolled back, the group stays.
    assert!(matches!(
        j.record_intent(&intent("rbt-a-1")),
        Err(JournalError::DuplicateClientOrderId(_))
    ));
    // Refused after its first statement ran (acknowledged twice with another id).
    j.record_ack("rbt-a-1", "1", 2_200).unwrap();
    assert!(j.record_ack("rbt-a-1", "2", 2_300).is_err());
    j.commit_group().unwrap();
    let o = j.order("rbt-a-1").unwrap();
    assert_eq!(
        (o.state, o.exchange_id.as_deref()),
        (IntentState::Acknowledged, Some("1"))
    );
    let updates: i64 = j
        .conn
        .query_row(
            "SELECT COUNT(*) FROM order_updates WHERE client_order_id = 'rbt-a-1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(updates, 2, "sent and one ack");
}

#[test]
fn rolling_back_a_group_returns_to_the_last_commit() {
    let mut j = journal();
    j.set_grouped(true).unwrap();
    j.record_intent(&intent("rbt-a-1")).unwrap();
    j.commit_group().unwrap();
    j.record_intent(&intent("rbt-a-2")).unwrap();
    j.rollback_group().unwrap();
    let ids: Vec<String> = j
        .orders()
        .unwrap()
        .into_iter()
        .map(|o| o.client_order_id)
        .collect();
    assert_eq!(ids, ["rbt-a-1"]);
}

// ---- netted orders of a book on one exchange account (schema v7) ----------------------------

fn legs(pairs: &[(&str, &str)]) -> Vec<(String, Decimal)> {
    pairs.iter().map(|(s, q)| (s.to_string(), d(q))).collect()
}

#[test]
fn a_netted_orders_fills_are_split_between_its_legs_when_journaled() {
    let mut j = journal();
    let mut netted = intent("n-1");
    netted.quantity = dec!(0.008);
    j.record_intent_with_legs(&netted, None, &legs(&[("a", "0.006"), ("b", "0.002")]))
        .unwrap();
    // 0.005 of 0.006 + 0.002: 0.00375 and 0.00125 rounded down to 0.003 and 0.001, the
    // leftover 0.001 to the larger remainder (a); the fee in proportion to the shares.
    assert!(
        j.record_fill(&fill("n-1", "t1", "0.005", "100", "0.000005", Some("BTC")))
            .unwrap()
    );
    // 0.002 of what is still wanted (0.002 and 0.001): 0.001 each.
    assert!(
        j.record_fill(&fill("n-1", "t2", "0.002", "101", "0.000002", Some("BTC")))
            .unwrap()
    );
    // A replay adds nothing, not even shares.
    assert!(
        !j.record_fill(&fill("n-1", "t2", "0.002", "101", "0.000002", Some("BTC")))
            .unwrap()
    );
    let of = |j: &Journal, s: &str| -> Vec<(Decimal, Decimal, Decimal)> {
        j.fills_of(Some(s))
            .unwrap()
            .into_iter()
            .map(|(_, _, f)| (f.quantity, f.price, f.fee))
            .collect()
    };
    assert_eq!(
        of(&j, "a"),
        vec![
            (dec!(0.004), dec!(100), dec!(0.000004)),
            (dec!(0.001), dec!(101), dec!(0.000001))
        ]
    );
    assert_eq!(
        of(&j, "b"),
        vec![
            (dec!(0.001), dec!(100), dec!(0.000001)),
            (dec!(0.001), dec!(101), dec!(0.000001))
        ]
    );
    // The account's fills are the exchange's, whole.
    assert_eq!(j.fills().unwrap().len(), 2);
    assert_eq!(
        j.order_legs("n-1").unwrap(),
        vec![
            ("a".to_string(), dec!(0.006), dec!(0.005)),
            ("b".to_string(), dec!(0.002), dec!(0.002))
        ]
    );
    // Fills after a row, per strategy: the shares, in journal order.
    let after: Vec<(i64, Option<String>, Decimal)> = j
        .fills_after(0)
        .unwrap()
        .into_iter()
        .map(|f| (f.id, f.strategy, f.record.quantity))
        .collect();
    assert_eq!(
        after,
        vec![
            (1, Some("a".into()), dec!(0.004)),
            (1, Some("b".into()), dec!(0.001)),
            (2, Some("a".into()), dec!(0.001)),
            (2, Some("b".into()), dec!(0.001)),
        ]
    );
    assert_eq!(j.last_fill_id().unwrap(), 2);
}

#[test]
fn a_netted_intent_needs_legs_that_sum_to_it() {
    let mut j = journal();
    let mut netted = intent("n-2");
    netted.quantity = dec!(1);
    let error = j
        .record_intent_with_legs(&netted, None, &legs(&[("a", "0.6"), ("b", "0.3")]))
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("legs sum to 0.9, not its quantity 1"),
        "{error}"
    );
    let error = j
        .record_intent_with_legs(&netted, None, &legs(&[("a", "1.5"), ("b", "-0.5")]))
        .unwrap_err();
    assert!(error.to_string().contains("not positive"), "{error}");
    let error = j
        .record_intent_with_legs(&netted, None, &legs(&[("a b", "0.5"), ("b", "0.5")]))
        .unwrap_err();
    assert!(error.to_string().contains("strategy id `a b`"), "{error}");
    assert!(j.order("n-2").is_err(), "nothing journaled");
}

proptest! {
    /// For random legs and a random sequence of partial fills: each fill's shares sum exactly
    /// to it (quantity and fee), no strategy ever gets more than its leg asked, and the shares
    /// a restart reads back (`fills_of`) are the ones journaled.
    #[test]
    fn partial_fills_split_exactly_and_never_past_a_leg(
        wanted in proptest::collection::vec(1i64..5_000, 2..5),
        parts in proptest::collection::vec((1u32..100, 0i64..1_000), 1..6),
        dp in 0u32..4,
    ) {
        let mut j = journal();
        let leg_list: Vec<(String, Decimal)> = wanted
            .iter()
            .enumerate()
            .map(|(k, q)| (format!("s{k}"), Decimal::new(*q, dp)))
            .collect();
        let total: Decimal = leg_list.iter().map(|(_, q)| *q).sum();
        let mut netted = intent("p-1");
        netted.quantity = total;
        j.record_intent_with_legs(&netted, None, &leg_list).unwrap();
        let mut left = total;
        for (n, (percent, fee)) in parts.iter().enumerate() {
            // a part of what remains, at the legs' precision (at least one unit)
            let unit = Decimal::new(1, dp);
            let mut qty = (left * Decimal::from(*percent) / Decimal::from(100))
                .round_dp_with_strategy(dp, rust_decimal::RoundingStrategy::ToZero);
            if qty < unit { qty = unit; }
            if qty > left { break; }
            let fee = Decimal::new(*fee, 6);
            let record = FillRecord {
                client_order_id: "p-1".into(),
                trade_id: format!("t{n}"),
                quantity: qty,
                price: dec!(100),
                fee,
                fee_asset: Some("USDT".into()),
                time: 5_000 + n as i64,
            };
            prop_assert!(j.record_fill(&record).unwrap());
            let rows = j.fills_after(j.last_fill_id().unwrap() - 1).unwrap();
            prop_assert_eq!(rows.iter().map(|r| r.record.quantity).sum::<Decimal>(), qty);
            prop_assert_eq!(rows.iter().map(|r| r.record.fee).sum::<Decimal>(), fee);
            left -= qty;
        }
        for (strategy, asked, filled) in j.order_legs("p-1").unwrap() {
            prop_assert!(filled <= asked, "{} got {} of {}", strategy, filled, asked);
            let own: Decimal = j.fills_of(Some(&strategy)).unwrap().iter().map(|(_, _, f)| f.quantity).sum();
            prop_assert_eq!(own, filled);
        }
        let all: Decimal = j.fills().unwrap().iter().map(|(_, _, f)| f.quantity).sum();
        prop_assert_eq!(all, total - left);
    }
}

#[test]
fn a_version_6_journal_gains_the_netting_tables_and_keeps_its_fills() {
    let (_dir, path) = temp_journal();
    {
        let mut j = Journal::open(&path).unwrap();
        j.start_run(&run()).unwrap();
        j.record_intent_for(&intent("a1"), Some("a")).unwrap();
        j.record_fill(&fill("a1", "t1", "0.5", "100", "0", None))
            .unwrap();
    }
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "DROP TABLE adjustment_shares; DROP TABLE fill_shares; DROP TABLE order_legs;
         UPDATE meta SET value = '6' WHERE key = 'schema_version';",
    )
    .unwrap();
    drop(conn);
    let mut j = Journal::open(&path).unwrap();
    assert_eq!(j.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(j.fills_of(Some("a")).unwrap().len(), 1);
    assert!(j.order_legs("a1").unwrap().is_empty());
    let mut netted = intent("n1");
    netted.quantity = dec!(1);
    j.record_intent_with_legs(&netted, None, &legs(&[("a", "0.5"), ("b", "0.5")]))
        .unwrap();
    j.record_fill(&fill("n1", "t2", "1", "100", "0", None))
        .unwrap();
    assert_eq!(j.fills_of(Some("b")).unwrap().len(), 1);
}

#[test]
fn recovery_starts_the_exchange_fills_query_after_the_last_exchange_trade_not_an_internal_one() {
    let mut j = journal();
    j.record_intent_for(&intent("x1"), Some("a")).unwrap();
    j.mark_sent("x1", 2_100).unwrap();
    j.record_ack("x1", "12345", 2_200).unwrap();
    j.record_fill(&fill("x1", "777", "0.5", "100", "0", None))
        .unwrap();
    // A crossing inside a book after it: its trade id is the book's own.
    j.record_intent_for(&intent("x2"), Some("b")).unwrap();
    j.mark_sent("x2", 2_300).unwrap();
    j.record_ack("x2", "crossed-x2", 2_400).unwrap();
    j.record_fill(&fill("x2", "crossed-x2", "0.5", "100", "0", None))
        .unwrap();
    let recovery = j.recover(10_000, i64::MAX).unwrap();
    assert_eq!(
        recovery.last_trade_ids.get("BTC/USDT").map(String::as_str),
        Some("777")
    );
}

fn book_journal() -> Journal {
    let mut j = Journal::open_in_memory().unwrap();
    let mut book_run = run();
    book_run.strategies = Some(vec!["a".into(), "b".into(), "c".into()]);
    j.start_run(&book_run).unwrap();
    j
}

/// Strategy `s` trades `quantity` of BTC/USDT at `price` (a whole order, one fill, no fee).
fn trade(j: &mut Journal, id: &str, s: &str, side: OrderSide, quantity: Decimal, price: &str) {
    let mut order = intent(id);
    order.side = side;
    order.quantity = quantity;
    j.record_intent_for(&order, Some(s)).unwrap();
    j.record_fill(&fill(id, "t", &quantity.to_string(), price, "0", None))
        .unwrap();
}

fn position(symbol: &str, delta: Decimal) -> BookAdjustment {
    BookAdjustment {
        target: AdjustmentTarget::Position(symbol.into()),
        delta,
        reason: "sync".into(),
    }
}

#[test]
fn attribution_gives_cash_to_the_reserve_and_positions_to_their_holders() {
    let cash = BookAdjustment {
        target: AdjustmentTarget::Cash,
        delta: dec!(-3.5),
        reason: "fee".into(),
    };
    assert_eq!(
        attribute(&cash, &BTreeMap::new()),
        Some(vec![(None, dec!(-3.5))])
    );
    let holders: BTreeMap<String, Decimal> = [("a", dec!(0.3)), ("b", dec!(0)), ("c", dec!(0.1))]
        .into_iter()
        .map(|(s, q)| (s.to_string(), q))
        .collect();
    // 0.0007 × 3/4 = 0.000525 → 0.0005, × 1/4 = 0.000175 → 0.0001; the leftover unit to
    // the largest remainder (c's 0.000075 against a's 0.000025).
    assert_eq!(
        attribute(&position("BTC/USDT", dec!(0.0007)), &holders),
        Some(vec![
            (Some("a".into()), dec!(0.0005)),
            (Some("c".into()), dec!(0.0002))
        ])
    );
    assert_eq!(
        attribute(&position("BTC/USDT", dec!(-0.4)), &holders),
        Some(vec![
            (Some("a".into()), dec!(-0.3)),
            (Some("c".into()), dec!(-0.1))
        ])
    );
    assert_eq!(
        attribute(&position("BTC/USDT", dec!(0.1)), &BTreeMap::new()),
        None
    );
}

#[test]
fn a_position_no_strategy_holds_is_refused_and_nothing_is_recorded() {
    let mut j = book_journal();
    trade(&mut j, "a1", "a", OrderSide::Buy, dec!(0.2), "100");
    trade(&mut j, "a2", "a", OrderSide::Sell, dec!(0.2), "101");
    let cash = BookAdjustment {
        target: AdjustmentTarget::Cash,
        delta: dec!(1),
        reason: "x".into(),
    };
    let err = j
        .record_adjustments(9, &[cash, position("BTC/USDT", dec!(0.01))])
        .unwrap_err();
    assert!(
        matches!(&err, JournalError::Unattributable(s) if s == "BTC/USDT"),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("no strategy of the book holds BTC/USDT")
    );
    // All or none: the cash adjustment before it is not recorded either.
    assert_eq!(j.last_adjustment_id().unwrap(), 0);
    assert!(j.adjustment_shares_after(0).unwrap().is_empty());
    // A single algorithm's journal attributes nothing and refuses nothing.
    let mut single = journal();
    assert!(
        single
            .record_adjustments(9, &[position("BTC/USDT", dec!(0.01))])
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        single.derive_book().unwrap().position("BTC/USDT"),
        dec!(0.01)
    );
}

/// One step of the property test: (strategy, quantity in 0.0001, kind, delta in 0.0001).
type Step = (usize, i64, u8, i64);

/// Plays `steps` into a book journal: buys, sells (at most what the strategy holds), position
/// and cash adjustments (a position one nobody holds is refused). Returns the journal and
/// every share recorded, in order.
fn play(steps: &[Step]) -> (Journal, Vec<AdjustmentShare>) {
    let ids = ["a", "b", "c"];
    let mut j = book_journal();
    let mut recorded = Vec::new();
    for (k, &(s, qty, kind, delta)) in steps.iter().enumerate() {
        let id = format!("o{k}");
        let quantity = Decimal::new(qty, 4);
        let price = format!("{}", 100 + k);
        match kind {
            0 => trade(&mut j, &id, ids[s], OrderSide::Buy, quantity, &price),
            1 => {
                let held = strategy_books(&j)
                    .get(&Some(ids[s].to_string()))
                    .map(|b| b.position("BTC/USDT"))
                    .unwrap_or_default();
                let quantity = quantity.min(held);
                if quantity > Decimal::ZERO {
                    trade(&mut j, &id, ids[s], OrderSide::Sell, quantity, &price);
                }
            }
            2 => {
                let account = j.derive_book().unwrap().position("BTC/USDT");
                let delta = Decimal::new(delta, 4).max(-account);
                if delta.is_zero() {
                    continue;
                }
                match j.record_adjustments(k as i64, &[position("BTC/USDT", delta)]) {
                    Ok(shares) => recorded.extend(shares),
                    Err(JournalError::Unattributable(_)) => assert!(account.is_zero()),
                    Err(e) => panic!("{e}"),
                }
            }
            _ => {
                let cash = BookAdjustment {
                    target: AdjustmentTarget::Cash,
                    delta: Decimal::new(delta, 2),
                    reason: "sync".into(),
                };
                recorded.extend(j.record_adjustments(k as i64, &[cash]).unwrap());
            }
        }
    }
    (j, recorded)
}

/// Each strategy's book from the journal alone (from zero cash: its fills and its shares),
/// and the reserve under `None`.
fn strategy_books(j: &Journal) -> BTreeMap<Option<String>, Book> {
    let mut books: BTreeMap<Option<String>, Book> = BTreeMap::new();
    for f in j.fills_after(0).unwrap() {
        books
            .entry(f.strategy.clone())
            .or_insert_with(|| Book::new("USDT", Decimal::ZERO))
            .apply_fill(
                &f.symbol,
                f.side,
                f.record.quantity,
                f.record.price,
                f.record.fee,
                f.record.fee_asset.as_deref(),
            )
            .unwrap();
    }
    for share in j.adjustment_shares_after(0).unwrap() {
        books
            .entry(share.strategy.clone())
            .or_insert_with(|| Book::new("USDT", Decimal::ZERO))
            .apply_adjustment(&BookAdjustment {
                target: share.target.clone(),
                delta: share.delta,
                reason: String::new(),
            })
            .unwrap();
    }
    books
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random trading and random adopted adjustments: the account (genesis, fills,
    /// adjustments) is at every step exactly the sum of the strategies' books (their fills and
    /// shares) and the reserve (the cash shares), no holder is taken below zero, and the same
    /// journaled facts give the same attribution (a restart reads what was written; a replay
    /// writes the same).
    #[test]
    fn adopted_adjustments_keep_the_account_the_sum_of_its_strategies(
        steps in prop::collection::vec((0usize..3, 1i64..5000, 0u8..4, -3000i64..3000), 1..30)
    ) {
        let (j, recorded) = play(&steps);
        let account = j.derive_book().unwrap();
        let books = strategy_books(&j);
        let cash: Decimal = books.values().map(|b| b.cash).sum();
        let held: Decimal = books.values().map(|b| b.position("BTC/USDT")).sum();
        prop_assert_eq!(account.cash - dec!(10000), cash);
        prop_assert_eq!(account.position("BTC/USDT"), held);
        for (id, book) in &books {
            prop_assert!(book.position("BTC/USDT") >= Decimal::ZERO, "{:?}", id);
            if id.is_none() {
                prop_assert!(book.positions.is_empty());
            }
        }
        prop_assert_eq!(j.adjustment_shares_after(0).unwrap(), recorded.clone());
        let (_, again) = play(&steps);
        prop_assert_eq!(again, recorded);
    }
}

#[test]
fn adjustment_shares_are_read_back_after_a_reopen_and_from_a_row_on() {
    let (_dir, path) = temp_journal();
    let recorded = {
        let mut j = Journal::open(&path).unwrap();
        let mut book_run = run();
        book_run.strategies = Some(vec!["a".into(), "b".into()]);
        j.start_run(&book_run).unwrap();
        trade(&mut j, "a1", "a", OrderSide::Buy, dec!(0.3), "100");
        trade(&mut j, "b1", "b", OrderSide::Buy, dec!(0.1), "100");
        let mut all = j
            .record_adjustments(5, &[position("BTC/USDT", dec!(0.004))])
            .unwrap();
        trade(&mut j, "b2", "b", OrderSide::Buy, dec!(0.2), "100");
        all.extend(
            j.record_adjustments(6, &[position("BTC/USDT", dec!(-0.006))])
                .unwrap(),
        );
        all
    };
    let j = Journal::open(&path).unwrap();
    assert_eq!(j.adjustment_shares_after(0).unwrap(), recorded);
    let deltas: Vec<(i64, Option<&str>, Decimal, i64)> = recorded
        .iter()
        .map(|s| {
            (
                s.adjustment_id,
                s.strategy.as_deref(),
                s.delta,
                s.after_fill_id,
            )
        })
        .collect();
    // The first split 3:1 after two fills; the second 0.303:0.301 (b's shares count) after three.
    assert_eq!(
        deltas,
        vec![
            (1, Some("a"), dec!(0.003), 2),
            (1, Some("b"), dec!(0.001), 2),
            (2, Some("a"), dec!(-0.003), 3),
            (2, Some("b"), dec!(-0.003), 3),
        ]
    );
    assert_eq!(
        j.adjustment_shares_after(1).unwrap(),
        recorded[2..].to_vec()
    );
    assert_eq!(j.last_adjustment_id().unwrap(), 2);
}

#[test]
fn a_version_7_journal_gains_adjustment_shares_and_keeps_its_adjustments() {
    let (_dir, path) = temp_journal();
    let mut book_run = run();
    book_run.strategies = Some(vec!["a".into()]);
    {
        let mut j = Journal::open(&path).unwrap();
        j.start_run(&book_run).unwrap();
        trade(&mut j, "a1", "a", OrderSide::Buy, dec!(0.5), "100");
        j.record_adjustments(3, &[position("BTC/USDT", dec!(0.01))])
            .unwrap();
    }
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "DROP TABLE adjustment_shares; UPDATE meta SET value = '7' WHERE key = 'schema_version';",
    )
    .unwrap();
    drop(conn);
    let mut j = Journal::open(&path).unwrap();
    assert_eq!(j.schema_version().unwrap(), SCHEMA_VERSION);
    // The version 7 adjustment is still in the account's book, attributed to nobody.
    assert_eq!(j.derive_book().unwrap().position("BTC/USDT"), dec!(0.51));
    assert!(j.adjustment_shares_after(0).unwrap().is_empty());
    let shares = j
        .record_adjustments(4, &[position("BTC/USDT", dec!(0.02))])
        .unwrap();
    assert_eq!(
        (shares[0].strategy.as_deref(), shares[0].delta),
        (Some("a"), dec!(0.02))
    );
    drop(j);
    assert_eq!(
        Journal::open(&path).unwrap().schema_version().unwrap(),
        SCHEMA_VERSION
    );
}

#[test]
fn adopted_adjustments_and_their_report_are_one_transaction() {
    let mut j = book_journal();
    trade(&mut j, "a1", "a", OrderSide::Buy, dec!(0.2), "100");
    let shares = j
        .record_adopted(7, &[position("BTC/USDT", dec!(0.01))], |shares| {
            Some(("synced".into(), format!("{{\"shares\": {}}}", shares.len())))
        })
        .unwrap();
    assert_eq!(shares.len(), 1);
    assert_eq!(
        j.reconciliations().unwrap(),
        vec![(7, "synced".to_string(), "{\"shares\": 1}".to_string())]
    );
    // Refused: neither the adjustment nor its report.
    let refused = j.record_adopted(8, &[position("ETH/USDT", dec!(1))], |_| {
        Some(("synced".into(), "{}".into()))
    });
    assert!(matches!(refused, Err(JournalError::Unattributable(_))));
    assert_eq!(j.reconciliations().unwrap().len(), 1);
    assert_eq!(j.last_adjustment_id().unwrap(), 1);
}
