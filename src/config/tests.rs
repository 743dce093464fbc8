//! One test per kind of mistake, in each format.

use super::*;

#[test]
fn empty_documents_are_the_defaults() {
    assert_eq!(Config::from_toml("").unwrap(), Config::default());
    assert_eq!(Config::from_yaml("").unwrap(), Config::default());
    assert_eq!(Config::from_json("{}").unwrap(), Config::default());
}

#[test]
fn defaults_round_trip_through_json() {
    let text = Config::default().to_json();
    assert_eq!(Config::from_json(&text).unwrap(), Config::default());
}

#[test]
fn range_error_names_path_line_and_column() {
    let doc =
        "[outbound]\ntimeout = \"5s\"\n\n[outbound.breaker]\nname = \"x\"\nfailure_rate = 150\n";
    let e = Config::from_toml(doc).unwrap_err();
    assert_eq!(e.path(), "outbound.breaker.failure_rate");
    assert_eq!(e.message(), "150 is above 100");
    assert_eq!((e.line(), e.column()), (Some(6), Some(16)));
    assert_eq!(e.kind(), &ErrorKind::Value);

    let e = Config::from_yaml("outbound:\n  breaker:\n    failure_rate: 150\n").unwrap_err();
    assert_eq!(e.path(), "outbound.breaker.failure_rate");
    assert_eq!(e.message(), "150 is above 100");
    assert_eq!(e.line(), Some(3));

    let e =
        Config::from_json("{\"outbound\": {\"breaker\": {\"failure_rate\": 150}}}").unwrap_err();
    assert_eq!(e.path(), "outbound.breaker.failure_rate");
    assert_eq!(e.message(), "150 is above 100");
    assert_eq!(e.line(), Some(1));
}

#[test]
fn type_errors() {
    let e = Config::from_toml("[monitor]\ndwell = \"two\"\n").unwrap_err();
    assert_eq!(e.path(), "monitor.dwell");
    assert_eq!(e.line(), Some(2));
    assert!(e.message().contains("invalid type"), "{e}");

    let e = Config::from_yaml("monitor:\n  dwell: two\n").unwrap_err();
    assert_eq!(e.path(), "monitor.dwell");
    assert!(e.message().contains("invalid type"), "{e}");

    let e = Config::from_json("{\"monitor\": {\"dwell\": true}}").unwrap_err();
    assert_eq!(e.path(), "monitor.dwell");
    assert!(e.message().contains("invalid type"), "{e}");
}

#[test]
fn unknown_keys_suggest_the_nearest_name() {
    let e = Config::from_toml("[outbound.breaker]\nfailure_rat = 5\n").unwrap_err();
    assert_eq!(e.path(), "outbound.breaker.failure_rat");
    assert_eq!(
        e.kind(),
        &ErrorKind::UnknownKey {
            suggestion: Some("failure_rate".into())
        }
    );
    assert!(
        e.to_string().contains("did you mean `failure_rate`?"),
        "{e}"
    );
    assert_eq!(e.line(), Some(2));

    let e = Config::from_yaml("monitor:\n  intervl: 1s\n").unwrap_err();
    assert_eq!(e.path(), "monitor.intervl");
    assert!(e.to_string().contains("did you mean `interval`?"), "{e}");

    let e = Config::from_json("{\"outbund\": {}}").unwrap_err();
    assert_eq!(e.path(), "outbund");
    assert!(e.to_string().contains("did you mean `outbound`?"), "{e}");

    // Far from every name: the valid names are listed instead.
    let e = Config::from_toml("zzzzzzzzzzzz = 1\n").unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::UnknownKey { suggestion: None });
    assert!(e.to_string().contains("expected one of"), "{e}");

    // Unknown values of enums and names in maps are suggested too.
    let e = Config::from_toml("[inbound.concurrency]\nalgorithm = \"gradiant2\"\n").unwrap_err();
    assert!(e.to_string().contains("did you mean `gradient2`?"), "{e}");
    let e = Config::from_toml(
        "[monitor.thresholds.memroy]\nelevated = 1\nhigh = 2\ncritical = 3\nemergency = 4\n",
    )
    .unwrap_err();
    assert_eq!(e.path(), "monitor.thresholds.memroy");
    assert!(e.to_string().contains("did you mean `memory`?"), "{e}");
    let e = Config::from_toml("[alerts.rules.presure]\nenabled = false\n").unwrap_err();
    assert!(e.to_string().contains("did you mean `pressure`?"), "{e}");
}

#[test]
fn bad_units() {
    let e = Config::from_toml("[outbound]\ntimeout = \"30\"\n").unwrap_err();
    assert_eq!(e.path(), "outbound.timeout");
    assert!(e.message().contains("no unit"), "{e}");
    assert_eq!(e.line(), Some(2));
    let e = Config::from_toml("[outbound]\ntimeout = 30\n").unwrap_err();
    assert!(e.message().contains("30 has no unit"), "{e}");
    let e =
        Config::from_yaml("outbound:\n  breaker:\n    memory_threshold: 3 parsecs\n").unwrap_err();
    assert_eq!(e.path(), "outbound.breaker.memory_threshold");
    assert!(e.message().contains("unknown size unit `parsecs`"), "{e}");
    let e = Config::from_json("{\"monitor\": {\"interval\": \"1 fortnight\"}}").unwrap_err();
    assert_eq!(e.path(), "monitor.interval");
    assert!(e.message().contains("unknown duration unit"), "{e}");
}

#[test]
fn builder_cross_field_errors_carry_the_document_path() {
    let e = Config::from_toml(
        "[outbound.breaker]\npermitted_calls_in_half_open = 2\nsuccess_threshold = 3\n",
    )
    .unwrap_err();
    assert_eq!(e.path(), "outbound.breaker.success_threshold");
    assert!(matches!(e.kind(), ErrorKind::Builder(b) if b.field() == "success_threshold"));
    assert!(e.message().contains("permitted_calls_in_half_open"), "{e}");

    let e = Config::from_toml(
        "[outbound.breaker]\nwait_duration = \"10s\"\nmax_wait_duration = \"5s\"\n",
    )
    .unwrap_err();
    assert_eq!(e.path(), "outbound.breaker.max_wait_duration");

    let e = Config::from_yaml("inbound:\n  concurrency:\n    shares: {critical: 60, high: 50}\n")
        .unwrap_err();
    assert_eq!(e.path(), "inbound.concurrency.shares.high");

    let e = Config::from_json(
        r#"{"quotas": {"groups": {"free": {"rate": {"soft": 20, "hard": 10}}}}}"#,
    )
    .unwrap_err();
    assert_eq!(e.path(), "quotas.groups.free.rate.soft");

    let e = Config::from_toml("[quotas]\ntenants = { acme = \"por\" }\n[quotas.groups.pro]\n")
        .unwrap_err();
    assert_eq!(e.path(), "quotas.tenants.acme");
    assert!(e.to_string().contains("did you mean `pro`?"), "{e}");

    let e = Config::from_toml("[monitor]\ndwell = 0\n").unwrap_err();
    assert_eq!(e.path(), "monitor.dwell");

    let e = Config::from_toml(
        "[monitor.thresholds.cpu]\nelevated = 50\nhigh = 40\ncritical = 85\nemergency = 95\n",
    )
    .unwrap_err();
    assert_eq!(e.path(), "monitor.thresholds.cpu.high");

    let e = Config::from_toml("[outbound.retry.budget]\nratio = 50\n").unwrap_err();
    assert_eq!(e.path(), "outbound.retry.budget.ratio");
}

#[test]
fn syntax_errors_have_a_location() {
    let e = Config::from_toml("[monitor\n").unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::Syntax);
    assert_eq!(e.line(), Some(1));
    let e = Config::from_yaml("monitor: [1, 2\n").unwrap_err();
    assert!(e.line().is_some(), "{e}");
    let e = Config::from_json("{\"monitor\": ").unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::Syntax);
    assert!(e.line().is_some());
    assert!(Config::from_json("{} {}").is_err());
}

#[test]
fn formats_agree() {
    let toml = r#"
        [monitor]
        interval = "250ms"
        [outbound]
        parts = ["retry", "breaker", "timeout"]
        timeout = "1m30s"
        [outbound.breaker]
        failure_rate = 25
        per_key = "header"
        key_header = "x-llm"
        memory_threshold = "512MiB"
        [quotas.groups.free]
        rate = { hard = 10, action = "suspend", suspend_for = "1m" }
    "#;
    let yaml = "monitor:\n  interval: 250ms\noutbound:\n  parts: [retry, breaker, timeout]\n  timeout: 1m30s\n  breaker:\n    failure_rate: 25\n    per_key: header\n    key_header: x-llm\n    memory_threshold: 512MiB\nquotas:\n  groups:\n    free:\n      rate: {hard: 10, action: suspend, suspend_for: 1m}\n";
    let json = r#"{"monitor": {"interval": "250ms"}, "outbound": {"parts": ["retry", "breaker", "timeout"], "timeout": "1m30s", "breaker": {"failure_rate": 25, "per_key": "header", "key_header": "x-llm", "memory_threshold": "512MiB"}}, "quotas": {"groups": {"free": {"rate": {"hard": 10, "action": "suspend", "suspend_for": "1m"}}}}}"#;
    let a = Config::from_toml(toml).unwrap();
    assert_eq!(a, Config::from_yaml(yaml).unwrap());
    assert_eq!(a, Config::from_json(json).unwrap());
    assert_eq!(a.outbound.timeout.get().as_secs(), 90);
    assert_eq!(
        a.outbound.breaker.memory_threshold.map(|s| s.bytes()),
        Some(512 << 20)
    );
}

#[test]
fn hostile_input_never_panics() {
    for doc in [
        "\u{0}",
        "[[[",
        "a = 1e999999",
        "[outbound.breaker]\nfailure_rate = nan\n",
        "[outbound]\ntimeout = \"99999999999999999999999999d\"\n",
        "[outbound.breaker]\nmax_keys = -1\n",
        "[monitor]\ninterval = \"0s\"\n",
        "[inbound.concurrency.scale]\nnormal = 0\nelevated = 0\nhigh = 0\ncritical = 0\nemergency = 0\n",
    ] {
        assert!(Config::from_toml(doc).is_err(), "{doc:?} was accepted");
    }
    for doc in ["- - -", "{", "monitor: !!binary x", "&a [*a]"] {
        let _ = Config::from_yaml(doc);
    }
}

/// The leaf keys of a JSON value, as dotted paths (maps' own keys excluded).
fn leaf_keys(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
    if let serde_json::Value::Object(m) = v {
        for (k, v) in m {
            let p = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                serde_json::Value::Object(inner) if !inner.is_empty() => leaf_keys(&p, v, out),
                _ => out.push(p),
            }
        }
    }
}

#[test]
fn example_config_is_the_defaults_and_documents_every_key() {
    let text = include_str!("../../examples/config.toml");
    let mut parsed = Config::from_toml(text).unwrap();
    let mut defaults = Config::default();
    parsed.degradation = parsed.degradation.resolved();
    defaults.degradation = defaults.degradation.resolved();
    assert_eq!(parsed, defaults);

    let mut keys = Vec::new();
    leaf_keys("", &serde_json::to_value(&defaults).unwrap(), &mut keys);
    let mut keys_of_unset = Vec::new();
    // Keys unset by default, and the fields of map entries, are documented in comments.
    for k in [
        "fallbacks.queue.max_wait",
        "fallbacks.queue.max_queued",
        "fallbacks.cache.capacity",
        "fallbacks.cache.max_age",
        "fallbacks.cache.store_every",
        "monitor.thresholds.margin",
        "alerts.rules.rate_limit",
        "alerts.rules.enabled",
        "degradation.normal.knobs",
        "quotas.groups.period",
        "quotas.groups.burst_window",
        "quotas.groups.soft",
        "quotas.groups.suspend_for",
        "quotas.groups.degrade_to",
        "quotas.groups.max_delay",
        "inbound.concurrency.critical_queue.capacity",
        "outbound.alert.latency.quantile",
    ] {
        keys_of_unset.push(k.to_string());
    }
    assert!(keys.len() > 100, "{}", keys.len());
    for k in keys.iter().chain(&keys_of_unset) {
        let leaf = k.rsplit('.').next().unwrap();
        let documented = text.contains(&format!("[{k}]"))
            || text.lines().any(|l| {
                let l = l.trim_start_matches('#').trim_start();
                l.starts_with(&format!("{leaf} ="))
                    || l.contains(&format!("{leaf} = "))
                    || l.contains(&format!("{{ {leaf} ="))
            });
        assert!(documented, "examples/config.toml does not document `{k}`");
    }
}
