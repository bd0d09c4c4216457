//! The certificates istio-agent hands a waypoint over SDS, from a stand-in: a plain Envoy that
//! answers every SDS stream with the same response, both secrets Istio names (`default`, the
//! workload's certificate and key; `ROOTCA`, the trust anchor), made here from a throwaway CA.
//!
//! Why it is needed: a waypoint's HBONE pieces are mutual TLS with those secrets, from the
//! `sds-grpc` cluster of istio-agent's bootstrap with no initial fetch timeout
//! (`connect_originate`, `pilot/pkg/networking/core/cluster_waypoint.go:112`; the 15008
//! listener). Envoy warms a cluster until its secrets arrive, and requests listeners only once
//! every cluster of the first CDS response is warm: without secrets a waypoint never gets a
//! listener, hence none of its routes or filter chains. No traffic uses these certificates
//! here (see [`super::gateway_api`]).
//!
//! The stand-in replies with one gRPC message and ends the stream without trailers: Envoy's
//! gRPC client takes the message (the SotW mux hands each subscription the secret it asked for)
//! and then retries the stream now and then, getting the same secrets, a no-op.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::envoy::free_port;
use crate::envoy_process::EnvoyProcess;

const SECRET_TYPE: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// A running SDS stand-in; stopped when dropped.
pub struct SdsStub {
    _envoy: EnvoyProcess,
    /// Where it answers (plaintext HTTP/2).
    pub address: SocketAddr,
}

impl SdsStub {
    /// Starts a stand-in serving a certificate for `spiffe_id` (e.g.
    /// `spiffe://cluster.local/ns/prod/sa/waypoint`) signed by a CA made for it, and that CA.
    pub fn start(spiffe_id: &str) -> Result<SdsStub> {
        let (ca, chain, key) = certificates(spiffe_id)?;
        let response = discovery_response(&[
            secret_with_certificate("default", &chain, &key),
            secret_with_trusted_ca("ROOTCA", &ca),
        ]);
        let mut frame = vec![0u8];
        let length = u32::try_from(response.len()).context("an SDS response over 4 GiB")?;
        frame.extend_from_slice(&length.to_be_bytes());
        frame.extend_from_slice(&response);
        let dir = tempfile::Builder::new().prefix("sticky-sds-").tempdir()?;
        let body = dir.path().join("response.grpc");
        std::fs::write(&body, &frame).with_context(|| format!("writing {}", body.display()))?;
        let port = free_port()?;
        let body_port = free_port()?;
        let router = json!({"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}});
        let manager = |name: &str, codec: &str, routes: Value, filters: Value| {
            json!({
                "name": name,
                "address": {"socket_address": {"address": "127.0.0.1", "port_value":
                    if name == "sds" { port } else { body_port }}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": name,
                        "codec_type": codec,
                        "route_config": {"virtual_hosts": [{"name": name, "domains": ["*"],
                                                            "routes": routes}]},
                        "http_filters": filters,
                    },
                }]}],
            })
        };
        // A direct response to a gRPC request becomes a gRPC error carrying the body as its
        // message (Envoy's local replies to gRPC requests), so the SDS listener proxies the
        // stream, its content type made plain, to a second listener that answers the bytes
        // with a gRPC content type, which Envoy relays as an upstream response.
        let bootstrap = json!({
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
            "static_resources": {
                "listeners": [
                    manager("sds", "HTTP2", json!([{
                        "match": {"prefix": "/"},
                        "route": {"cluster": "body", "timeout": "0s"},
                        "request_headers_to_add": [{
                            "header": {"key": "content-type", "value": "application/octet-stream"},
                            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
                    }]), json!([router])),
                    manager("body", "AUTO", json!([{
                        "match": {"prefix": "/"},
                        "direct_response": {"status": 200,
                                            "body": {"filename": body.display().to_string()}},
                    }]), json!([
                        {"name": "envoy.filters.http.header_mutation", "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
                            "mutations": {"response_mutations": [{"append": {
                                "header": {"key": "content-type", "value": "application/grpc"},
                                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}}]}}},
                        router,
                    ])),
                ],
                "clusters": [{
                    "name": "body", "type": "STATIC", "connect_timeout": "1s",
                    "load_assignment": {"cluster_name": "body", "endpoints": [{"lb_endpoints": [
                        {"endpoint": {"address": {"socket_address": {
                            "address": "127.0.0.1", "port_value": body_port}}}}]}]},
                }],
            },
        });
        let mut envoy = EnvoyProcess::spawn("sds-stand-in", dir, &bootstrap, 1, &[])?;
        envoy.wait_ready().map_err(|err| envoy.explain(err))?;
        Ok(SdsStub {
            _envoy: envoy,
            address: SocketAddr::from(([127, 0, 0, 1], port)),
        })
    }
}

/// A CA (PEM), and a certificate chain (PEM) and key (PEM) for `spiffe_id` it signed.
fn certificates(spiffe_id: &str) -> Result<(String, String, String)> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
    let ca_key = KeyPair::generate().context("a CA key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params
        .self_signed(&ca_key)
        .context("the CA certificate")?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().context("a workload key")?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.subject_alt_names = vec![SanType::URI(
        spiffe_id
            .try_into()
            .with_context(|| format!("{spiffe_id} as a URI"))?,
    )];
    let leaf = params
        .signed_by(&key, &issuer)
        .context("the workload certificate")?;
    Ok((ca.pem(), leaf.pem(), key.serialize_pem()))
}

/// `envoy.service.discovery.v3.DiscoveryResponse` of `secrets` (each an encoded `Secret`).
fn discovery_response(secrets: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    field(&mut out, 1, b"1"); // version_info
    for secret in secrets {
        let mut any = Vec::new();
        field(&mut any, 1, SECRET_TYPE.as_bytes()); // type_url
        field(&mut any, 2, secret); // value
        field(&mut out, 2, &any); // resources
    }
    field(&mut out, 4, SECRET_TYPE.as_bytes()); // type_url
    field(&mut out, 5, b"1"); // nonce
    out
}

/// `Secret{name, tls_certificate{certificate_chain, private_key}}`, inline bytes.
fn secret_with_certificate(name: &str, chain: &str, key: &str) -> Vec<u8> {
    let mut certificate = Vec::new();
    field(&mut certificate, 1, &inline_bytes(chain));
    field(&mut certificate, 2, &inline_bytes(key));
    let mut secret = Vec::new();
    field(&mut secret, 1, name.as_bytes());
    field(&mut secret, 2, &certificate);
    secret
}

/// `Secret{name, validation_context{trusted_ca}}`, inline bytes.
fn secret_with_trusted_ca(name: &str, ca: &str) -> Vec<u8> {
    let mut context = Vec::new();
    field(&mut context, 1, &inline_bytes(ca));
    let mut secret = Vec::new();
    field(&mut secret, 1, name.as_bytes());
    field(&mut secret, 4, &context);
    secret
}

/// `DataSource{inline_bytes}`.
fn inline_bytes(text: &str) -> Vec<u8> {
    let mut source = Vec::new();
    field(&mut source, 2, text.as_bytes());
    source
}

/// A length-delimited protobuf field.
fn field(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
    varint(out, (number << 3) | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_tagged_and_length_prefixed() {
        let mut out = Vec::new();
        field(&mut out, 2, &[7u8; 200]);
        assert_eq!(&out[..3], &[0x12, 0xc8, 0x01]);
        assert_eq!(out.len(), 203);
    }

    #[test]
    fn the_workload_certificate_names_its_spiffe_id() {
        let (ca, chain, key) = certificates("spiffe://cluster.local/ns/prod/sa/waypoint").unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(chain.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(key.contains("PRIVATE KEY"));
    }
}
