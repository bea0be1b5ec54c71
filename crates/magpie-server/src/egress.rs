//! The outbound policy: where connections may send.
//!
//! Allowed are the robot platforms' own hosts and what the operator lists in `outbound.allow`
//! (host names, `*.domain` wildcards, networks and addresses). Private, loopback, link-local and
//! other special addresses are refused unless an allowed network holds them, and so is this
//! server's own listen address unless `outbound.allow_self` (a connection posting to one of its
//! own listen paths loops).
//!
//! A webhook is checked when its connection is saved ([`Egress::check_url`]) and again before
//! every send; a host name is checked once more on the addresses it resolves to when the client
//! connects ([`Resolver`]), so a name that later resolves elsewhere (DNS rebinding) reaches
//! nothing it should not. The client follows no redirects and uses no proxy.
//!
//! It knows URLs and addresses, nothing of flows or the outbox.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};

use ipnet::IpNet;
use magpie_core::auth::OutboundSpec;

/// The platforms' own webhook hosts (../shared/reference/robots.md).
pub const PLATFORM_HOSTS: [&str; 4] =
    ["qyapi.weixin.qq.com", "oapi.dingtalk.com", "open.feishu.cn", "open.larksuite.com"];

/// The policy in force.
#[derive(Debug, Default)]
pub struct Egress {
    hosts: Vec<String>,
    nets: Vec<IpNet>,
    allow_self: bool,
    /// The address this server listens on, once bound.
    own: OnceLock<SocketAddr>,
}

impl Egress {
    /// The policy of an `outbound:` section; an entry that is neither a host nor a network is
    /// refused with its path.
    pub fn new(spec: &OutboundSpec) -> Result<Egress, String> {
        let mut e = Egress { allow_self: spec.allow_self, ..Egress::default() };
        for (i, a) in spec.allow.iter().enumerate() {
            let a = a.trim();
            if let Ok(net) = a.parse::<IpNet>() {
                e.nets.push(net);
            } else if let Ok(ip) = a.parse::<IpAddr>() {
                e.nets.push(IpNet::from(ip));
            } else if is_host_pattern(a) {
                e.hosts.push(a.to_ascii_lowercase());
            } else {
                return Err(format!(
                    "outbound.allow[{i}]: {a:?} is neither a host (hooks.example.com, *.example.com) nor a network (10.0.0.0/8, 127.0.0.1)"
                ));
            }
        }
        Ok(e)
    }

    /// Records the address this server listens on (for the loop check).
    pub fn set_own(&self, addr: SocketAddr) {
        let _ = self.own.set(addr);
    }

    /// Whether a webhook URL may be sent to, as far as can be told without resolving it.
    pub fn check_url(&self, url: &str) -> Result<(), String> {
        let u = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(format!("scheme {:?}: only https (or http) is sent to", u.scheme()));
        }
        let port = u.port_or_known_default().unwrap_or(443);
        match u.host() {
            Some(url::Host::Ipv4(ip)) => self.check_addr(SocketAddr::new(IpAddr::V4(ip), port)),
            Some(url::Host::Ipv6(ip)) => self.check_addr(SocketAddr::new(IpAddr::V6(ip), port)),
            Some(url::Host::Domain(name)) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                if (name == "localhost" || name.ends_with(".localhost"))
                    && !self.allow_self
                    && self.is_own(IpAddr::from([127, 0, 0, 1]), port)
                {
                    return Err(format!(
                        "{name}:{port} is this Magpie server's own address: a connection to it would loop (set outbound.allow_self to allow it)"
                    ));
                }
                if PLATFORM_HOSTS.contains(&name.as_str()) || self.hosts.iter().any(|h| host_matches(h, &name)) {
                    Ok(())
                } else {
                    Err(format!(
                        "host {name:?} is not a robot platform's ({}) and outbound.allow does not list it",
                        PLATFORM_HOSTS.join(", ")
                    ))
                }
            }
            None => Err("the URL has no host".into()),
        }
    }

    /// Whether an address (a literal one, or one a name resolved to) may be connected to.
    pub fn check_addr(&self, addr: SocketAddr) -> Result<(), String> {
        let ip = canonical(addr.ip());
        if !self.allow_self && self.is_own(ip, addr.port()) {
            return Err(format!(
                "{addr} is this Magpie server's own address: a connection to it would loop (set outbound.allow_self to allow it)"
            ));
        }
        if self.nets.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        if let Some(kind) = special(ip) {
            return Err(format!("{ip} is a {kind} address; list it (or its network) in outbound.allow to send there"));
        }
        Ok(())
    }

    fn is_own(&self, ip: IpAddr, port: u16) -> bool {
        let Some(own) = self.own.get() else { return false };
        if port != own.port() {
            return false;
        }
        let own_ip = canonical(own.ip());
        // A server on 0.0.0.0 answers on every address of the machine; loopback is one of them.
        ip == own_ip || ip.is_loopback() && (own_ip.is_loopback() || own_ip.is_unspecified())
    }
}

/// What kind of special address `ip` is, if it is one: none of these is a robot platform.
fn special(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_private() {
                Some("private")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
                Some("shared (carrier-grade NAT)")
            } else if v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || o[0] >= 240
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
            {
                Some("reserved")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() || v6.is_multicast() {
                Some("reserved")
            } else if (s[0] & 0xfe00) == 0xfc00 {
                Some("private (unique local)")
            } else if (s[0] & 0xffc0) == 0xfe80 {
                Some("link-local")
            } else {
                None
            }
        }
    }
}

/// An IPv4 address written as IPv6 (`::ffff:127.0.0.1`) is that IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn is_host_pattern(s: &str) -> bool {
    let name = s.strip_prefix("*.").unwrap_or(s);
    !name.is_empty()
        && name.len() <= 253
        && name
            .split('.')
            .all(|l| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

fn host_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(domain) => {
            name.len() > domain.len() + 1 && name.ends_with(domain) && name[..name.len() - domain.len()].ends_with('.')
        }
        None => pattern == name,
    }
}

/// The HTTP client connections send with: addresses held to the policy as resolved, no
/// redirects followed, no proxy (a proxy would resolve names where the policy cannot see).
pub fn http_client(policy: Arc<Egress>) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .user_agent(concat!("magpie/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(5))
        .dns_resolver(Arc::new(Resolver(policy)))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())
}

/// The HTTP client's resolver: a name's addresses are resolved by the system, then each is held
/// to the policy; a name with none left is refused.
pub struct Resolver(pub Arc<Egress>);

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            // The port is not known here: the loop check sees port 0 and is made on the URL.
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match policy.check_addr(*a) {
                    Ok(()) => true,
                    Err(e) => {
                        refused = Some(e);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let why = refused.unwrap_or_else(|| "it resolves to no address".into());
                return Err(format!("outbound policy: {host} refused: {why}").into());
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str]) -> Egress {
        Egress::new(&OutboundSpec { allow: allow.iter().map(|s| s.to_string()).collect(), allow_self: false }).unwrap()
    }

    #[test]
    fn platform_hosts_pass_and_others_need_allowing() {
        let p = policy(&["hooks.example.com", "*.corp.example", "10.1.0.0/16"]);
        assert!(p.check_url("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k").is_ok());
        assert!(p.check_url("https://open.larksuite.com/open-apis/bot/v2/hook/x").is_ok());
        assert!(p.check_url("https://hooks.example.com/x").is_ok());
        assert!(p.check_url("https://a.corp.example/x").is_ok());
        assert!(p.check_url("https://corp.example/x").unwrap_err().contains("not a robot platform"));
        assert!(p.check_url("https://evil.example/x").unwrap_err().contains("outbound.allow"));
        assert!(p.check_url("http://10.1.2.3:8080/x").is_ok());
        assert!(p.check_url("http://10.2.0.1/x").unwrap_err().contains("private"));
        assert!(p.check_url("http://127.0.0.1:7481/x").unwrap_err().contains("loopback"));
        assert!(p.check_url("http://localhost:7481/x").unwrap_err().contains("outbound.allow does not list it"));
        assert!(p.check_url("http://169.254.169.254/latest").unwrap_err().contains("link-local"));
        assert!(p.check_url("http://[::ffff:127.0.0.1]/x").unwrap_err().contains("loopback"));
        assert!(p.check_url("http://[fe80::1]/x").unwrap_err().contains("link-local"));
        assert!(p.check_url("ftp://qyapi.weixin.qq.com/").is_err());
    }

    #[test]
    fn its_own_address_is_a_loop_even_when_loopback_is_allowed() {
        let p = policy(&["127.0.0.1/32"]);
        p.set_own("0.0.0.0:7480".parse().unwrap());
        assert!(p.check_url("http://127.0.0.1:7481/x").is_ok());
        assert!(p.check_url("http://127.0.0.1:7480/hooks/x").unwrap_err().contains("loop"));
        assert!(p.check_url("http://localhost:7480/hooks/x").unwrap_err().contains("loop"));
        let open = Egress::new(&OutboundSpec { allow: vec!["127.0.0.1".into()], allow_self: true }).unwrap();
        open.set_own("127.0.0.1:7480".parse().unwrap());
        assert!(open.check_url("http://127.0.0.1:7480/hooks/x").is_ok());
    }

    #[test]
    fn bad_entries_are_refused_with_their_index() {
        let e = Egress::new(&OutboundSpec { allow: vec!["ok.example".into(), "http://x/".into()], allow_self: false });
        assert!(e.unwrap_err().starts_with("outbound.allow[1]"));
    }
}
