//! The benchmark suite (`crates/tidewater-bench`) with tiny sizes against this
//! build's `tidewater`, so the suite cannot rot: every scenario must run and
//! write BENCHMARKS.md and results.json with non-zero figures. No timing is asserted.

use std::path::PathBuf;

use tidewater_bench::{run, Options, Scenario, Sizes};

#[test]
fn the_benchmark_suite_runs_every_scenario_with_tiny_sizes() {
    let out = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let report = run(Options {
        scenarios: Scenario::ALL.to_vec(),
        sizes: Sizes::quick(),
        quick: true,
        tidewater: PathBuf::from(env!("CARGO_BIN_EXE_tidewater")),
        out_dir: out.path().to_path_buf(),
        work_dir: work.path().to_path_buf(),
        freshness_flush_ms: vec![10],
        duckdb_extensions: None,
        settings: Vec::new(),
        command: "bench_smoke test".into(),
    })
    .expect("the suite runs");
    assert!(
        report.failures.is_empty(),
        "failed scenarios: {:#?}",
        report.failures
    );

    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("bench/results.json")).unwrap(),
    )
    .unwrap();
    let figures = json["figures"].as_array().expect("figures");
    for scenario in [
        "PostgreSQL streaming apply",
        "MariaDB streaming apply",
        "PostgreSQL snapshot",
        "MariaDB snapshot",
        "PostgreSQL freshness",
        "Memory",
        "PostgreSQL scaling",
        "BigQuery freshness",
        "BigQuery snapshot",
    ] {
        assert!(
            figures.iter().any(|f| f["scenario"] == scenario),
            "no figure for {scenario}: {json:#}"
        );
    }
    for f in figures {
        // A duration can be 0 at these sizes (no sample saw a source transaction open).
        let zero_ok = f["unit"] == "s";
        assert!(
            f["tidewater"]
                .as_f64()
                .is_some_and(|v| v > 0.0 || (zero_ok && v == 0.0)),
            "non-positive figure {f:#}"
        );
        if !f["baseline"].is_null() {
            assert!(
                f["baseline"]["value"].as_f64().is_some_and(|v| v > 0.0),
                "bad baseline {f:#}"
            );
            assert!(
                f["ratio"].as_f64().is_some_and(|v| v > 0.0),
                "bad ratio {f:#}"
            );
        }
    }
    let md = std::fs::read_to_string(out.path().join("BENCHMARKS.md")).unwrap();
    assert!(
        md.contains("| scenario | measure | tidewater | baseline | ratio | target | met? |"),
        "{md}"
    );
    assert!(
        md.contains("bench_smoke test") && md.contains("PostgreSQL streaming apply"),
        "{md}"
    );
}
