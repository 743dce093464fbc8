//! `docs/kubernetes/*.yaml` parse, agree with each other, and name what the crate really
//! serves: the HPA targets the Deployment, scales on the metric the prometheus-adapter rule
//! exposes, and that metric is in the crate's Prometheus text at the path the manifests
//! scrape (`/status?format=prometheus` of a real `StatusService`).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_norway::Value;
use tower::ServiceExt;
use tower_pressure::concurrency::AdaptiveConcurrencyLayer;
use tower_pressure::pressure::PressureMonitor;
use tower_pressure::status::{StatusRegistry, StatusService};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/kubernetes")
}

/// Every YAML document of `text` (`---` separated).
fn documents(file: &str, text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{file}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// Every document of every `docs/kubernetes/*.yaml`, with its file name.
fn all_documents() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("docs/kubernetes exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&f).expect("read yaml");
        for d in documents(&name, &text) {
            out.push((name.clone(), d));
        }
    }
    out
}

/// `v` at a dotted path (`spec.template.metadata.labels`), as a string.
fn s<'a>(v: &'a Value, path: &str) -> &'a str {
    at(v, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path} is not a string: {v:?}"))
}

fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| match k.parse::<usize>() {
        Ok(i) => &v[i],
        Err(_) => &v[k],
    })
}

fn one<'a>(docs: &'a [(String, Value)], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs
        .iter()
        .filter(|(_, d)| d["kind"].as_str() == Some(kind))
        .map(|(_, d)| d)
        .collect();
    assert_eq!(found.len(), 1, "exactly one {kind} in docs/kubernetes");
    found[0]
}

/// The crate's Prometheus text, as the manifests scrape it: `GET /status?format=prometheus`
/// of a `StatusService` holding an adaptive limiter.
async fn exposition() -> String {
    let (monitor, _manual) = PressureMonitor::manual();
    let limiter = AdaptiveConcurrencyLayer::builder(monitor)
        .name("api")
        .build()
        .expect("limiter");
    let registry = StatusRegistry::new();
    registry.register(limiter.handle());
    let req = http::Request::get("/status?format=prometheus")
        .body(())
        .expect("request");
    let resp = StatusService::new(registry)
        .oneshot(req)
        .await
        .expect("infallible");
    assert_eq!(resp.status(), 200);
    resp.into_body()
}

#[test]
fn every_document_parses_and_has_a_kind() {
    let docs = all_documents();
    let kinds: Vec<&str> = docs.iter().map(|(_, d)| s(d, "kind")).collect();
    for kind in [
        "Deployment",
        "Service",
        "ConfigMap",
        "HorizontalPodAutoscaler",
    ] {
        assert!(kinds.contains(&kind), "no {kind} in {kinds:?}");
    }
    for (file, d) in &docs {
        assert!(d["apiVersion"].as_str().is_some(), "{file}: no apiVersion");
        assert!(
            d["metadata"]["name"].as_str().is_some(),
            "{file}: no metadata.name"
        );
    }
}

#[tokio::test]
async fn hpa_adapter_rule_deployment_and_crate_agree() {
    let docs = all_documents();
    let deployment = one(&docs, "Deployment");
    let service = one(&docs, "Service");
    let hpa = one(&docs, "HorizontalPodAutoscaler");
    let adapter = one(&docs, "ConfigMap");

    // The Deployment's selector selects its own pods; the Service selects them too.
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let selector = deployment["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .expect("matchLabels");
    for (k, v) in selector {
        assert_eq!(&pod_labels[k.as_str().unwrap()], v, "selector {k:?}");
    }
    for (k, v) in service["spec"]["selector"].as_mapping().expect("selector") {
        assert_eq!(
            &pod_labels[k.as_str().unwrap()],
            v,
            "service selector {k:?}"
        );
    }
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let port_name = s(&service["spec"]["ports"][0], "targetPort");
    let port = container["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .find(|p| p["name"].as_str() == Some(port_name))
        .expect("the Service's targetPort is a named container port");
    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        annotations["prometheus.io/port"]
            .as_str()
            .expect("port annotation"),
        port["containerPort"].as_u64().expect("port").to_string()
    );

    // The HPA scales the Deployment, in its namespace, on a Pods metric.
    assert_eq!(s(hpa, "apiVersion"), "autoscaling/v2");
    assert_eq!(s(hpa, "spec.scaleTargetRef.kind"), "Deployment");
    assert_eq!(s(hpa, "spec.scaleTargetRef.apiVersion"), "apps/v1");
    assert_eq!(
        s(hpa, "spec.scaleTargetRef.name"),
        s(deployment, "metadata.name")
    );
    assert_eq!(
        s(hpa, "metadata.namespace"),
        s(deployment, "metadata.namespace")
    );
    let min = hpa["spec"]["minReplicas"].as_u64().expect("minReplicas");
    let max = hpa["spec"]["maxReplicas"].as_u64().expect("maxReplicas");
    assert!(1 <= min && min <= max, "{min} ..= {max}");
    let metric = &hpa["spec"]["metrics"][0];
    assert_eq!(s(metric, "type"), "Pods");
    let hpa_metric = s(metric, "pods.metric.name");
    assert_eq!(s(metric, "pods.target.type"), "AverageValue");
    // A Kubernetes quantity below 1: the limiters are not yet shedding at the target.
    let target = s(metric, "pods.target.averageValue");
    let value: f64 = match target.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().expect("quantity") / 1000.0,
        None => target.parse().expect("quantity"),
    };
    assert!(value > 0.0 && value < 1.0, "averageValue {target}");

    // The adapter's rule (inside the ConfigMap) exposes that metric as a pods metric.
    let config = adapter["data"]
        .as_mapping()
        .expect("data")
        .values()
        .next()
        .and_then(Value::as_str)
        .expect("the adapter's config file in the ConfigMap");
    let config = documents("rules.yaml (config.yaml)", config);
    let rules = config[0]["rules"].as_sequence().expect("rules");
    let rule = rules
        .iter()
        .find(|r| r["name"]["as"].as_str() == Some(hpa_metric))
        .unwrap_or_else(|| panic!("no adapter rule exposes {hpa_metric}"));
    let exposed = s(rule, "name.as");
    assert!(!exposed.contains('$'), "a literal name: {exposed}");
    assert_eq!(s(&rule["resources"]["overrides"]["pod"], "resource"), "pod");
    assert_eq!(
        s(&rule["resources"]["overrides"]["namespace"], "resource"),
        "namespace"
    );
    let series_query = s(rule, "seriesQuery");
    let series = series_query.split('{').next().expect("series name").trim();
    assert_eq!(s(rule, "name.matches"), format!("^{series}$"));
    let query = s(rule, "metricsQuery");
    for part in ["<<.Series>>", "<<.LabelMatchers>>", "<<.GroupBy>>"] {
        assert!(query.contains(part), "metricsQuery without {part}: {query}");
    }

    // The crate exports that series as a gauge at the scraped path.
    assert_eq!(annotations["prometheus.io/path"].as_str(), Some("/status"));
    let text = exposition().await;
    assert!(
        text.contains(&format!("# TYPE {series} gauge\n")),
        "{series} is not a gauge the crate exports:\n{text}"
    );
    assert!(
        text.contains(&format!("{series}{{limiter=\"api\"}} ")),
        "{series} has no sample:\n{text}"
    );
}
