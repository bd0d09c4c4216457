//! The dashboard against a Kubernetes API over real HTTP, on both backends (see `support`):
//! it lists the namespace's rollouts, its actions change the cluster's objects as the CLI's
//! commands do and are recorded in the history as the dashboard's, and an action sent with
//! the generation of a page that missed a change is refused with 409, changing nothing.

#[macro_use]
mod support;

use dashboard::server;
use runtime::target::place::Place;
use serde_json::{json, Value};
use support::{assert_same, NS};

/// One request to the dashboard at `address`: the status code and the JSON body (null when
/// it is not JSON).
async fn request(address: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = reqwest::Client::new().request(method, format!("http://{address}{path}"));
    if let Some(body) = body {
        request = request.json(body);
    }
    let answer = request.send().await.unwrap();
    let code = answer.status().as_u16();
    (code, answer.json().await.unwrap_or(Value::Null))
}

on_both_backends! {
    async fn dashboard_actions_change_the_cluster(backend) {
        let Some(c) = backend.cluster() else { return };
        c.init().await;
        c.ok(&["start", "--canary", "v2"]).await;
        let source = Place::Kube { client: c.kube_client(), namespace: Some(NS.to_owned()) };
        let listener = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let served = tokio::spawn(server::serve(listener, source, None, None, None));

        let (code, state) = request(&address, "GET", "/api/rollouts", None).await;
        assert_eq!(code, 200);
        let shop = &state["rollouts"][0];
        assert_eq!((shop["id"].as_str(), shop["ratio"].as_str()), (Some("prod/shop"), Some("100:0")), "{state:#}");
        let seen = shop["generation"].clone();

        let next = json!({"rollout": "prod/shop", "action": "next", "generation": seen});
        let (code, answer) = request(&address, "POST", "/api/actions", Some(&next)).await;
        assert_eq!((code, answer["message"].as_str()), (200, Some("next 1: applied (1 object written)")), "{answer}");
        assert_same(&c.plugin_weights(), &json!([{"name": "v1", "weight": 99.0}, {"name": "v2", "weight": 1.0}]));
        let history = c.rollout()["status"]["history"].clone();
        assert_eq!(history.as_array().unwrap().last().unwrap()["action"], "dashboard: next 1");

        // The same page again: it saw the generation before its own Next.
        let (code, answer) = request(&address, "POST", "/api/actions", Some(&next)).await;
        assert_eq!(code, 409, "{answer}");
        assert!(answer["error"].as_str().unwrap().contains("changed meanwhile"), "{answer}");
        assert_same(&c.plugin_weights(), &json!([{"name": "v1", "weight": 99.0}, {"name": "v2", "weight": 1.0}]));

        // The CLI's refusal, in the CLI's words (without its `error: `).
        let cli = c.sticky(&["-n", NS, "set-weight", "100.001"]).await;
        let odd = json!({"rollout": "prod/shop", "action": "set-weight", "weight": 100.001});
        let (code, answer) = request(&address, "POST", "/api/actions", Some(&odd)).await;
        assert_eq!(code, 422, "{answer}");
        assert_eq!(format!("error: {}\n", answer["error"].as_str().unwrap()), cli.stderr);
        let missing = json!({"rollout": "prod/cart", "action": "next"});
        let (code, _) = request(&address, "POST", "/api/actions", Some(&missing)).await;
        assert_eq!(code, 422);
        served.abort();
    }
}
