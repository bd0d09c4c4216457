//! Who a command acts as, for the history's "by whom": the user the API server itself says the
//! credentials are (a SelfSubjectReview, `authentication.k8s.io/v1`: what RBAC and the audit
//! log see, whatever the kubeconfig calls it), else the user the kubeconfig's current context
//! names (a server older than 1.28, or one that refuses the review).

use std::path::Path;

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::PostParams;
use kube::config::Kubeconfig;
use kube::{Api, Client};

/// The user `client` acts as, as the API server reports it, else as the kubeconfig
/// (`kubeconfig`, or the usual places) names it; `None` when neither says (in-cluster, no
/// review allowed).
pub async fn user(client: &Client, kubeconfig: Option<&Path>) -> Option<String> {
    match reviewed(client).await {
        Some(user) => Some(user),
        None => configured(kubeconfig),
    }
}

/// The user name of a SelfSubjectReview.
async fn reviewed(client: &Client) -> Option<String> {
    let api: Api<SelfSubjectReview> = Api::all(client.clone());
    let review = api
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .ok()?;
    review
        .status?
        .user_info?
        .username
        .filter(|name| !name.is_empty())
}

/// The user of the kubeconfig's current context.
fn configured(kubeconfig: Option<&Path>) -> Option<String> {
    let config = match kubeconfig {
        Some(path) => Kubeconfig::read_from(path),
        None => Kubeconfig::read(),
    }
    .ok()?;
    context_user(&config)
}

/// The user the current context of `config` names.
fn context_user(config: &Kubeconfig) -> Option<String> {
    let current = config.current_context.as_deref()?;
    config
        .contexts
        .iter()
        .find(|c| c.name == current)?
        .context
        .as_ref()?
        .user
        .clone()
        .filter(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_contexts_user() {
        let config = |current: &str| {
            let text = format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: {current}\nclusters: []\nusers: []\ncontexts:\n- name: dev\n  context: {{cluster: c, user: alice}}\n- name: prod\n  context: {{cluster: c, user: ops-bot}}\n"
            );
            Kubeconfig::from_yaml(&text).expect("a kubeconfig")
        };
        assert_eq!(context_user(&config("prod")).as_deref(), Some("ops-bot"));
        assert_eq!(context_user(&config("dev")).as_deref(), Some("alice"));
        assert_eq!(context_user(&config("gone")), None);
    }
}
