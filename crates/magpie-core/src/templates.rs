//! Built-in sample events (默认模板): what the console's "send event > default template" sends.

use serde_json::{Value, json};

/// A built-in sample event.
#[derive(Debug, Clone)]
pub struct EventTemplate {
    /// The name used by `magpie events send-template NAME`.
    pub name: &'static str,
    /// The console's Chinese label.
    pub label: &'static str,
    /// What the event means.
    pub description: &'static str,
    event: fn() -> Value,
}

impl EventTemplate {
    /// The template's event with a fresh `id` and `time`.
    pub fn instantiate(&self, id: &str, time_ms: i64) -> Value {
        let mut e = (self.event)();
        e["id"] = Value::String(id.to_string());
        e["time"] = Value::from(time_ms);
        e
    }
}

/// Every built-in template.
pub fn all() -> &'static [EventTemplate] {
    TEMPLATES
}

/// The template called `name` (case-insensitive).
pub fn find(name: &str) -> Option<&'static EventTemplate> {
    TEMPLATES.iter().find(|t| t.name.eq_ignore_ascii_case(name))
}

const TEMPLATES: &[EventTemplate] = &[
    EventTemplate {
        name: "cvm:GuestReboot",
        label: "云服务器 - 机器重启",
        description: "A CVM instance rebooted (status change, no recovery)",
        event: || cvm("GuestReboot", "-", "ins-abcd1234", "ap-shanghai", "10.0.0.12", json!({})),
    },
    EventTemplate {
        name: "cvm:PingUnreachable",
        label: "云服务器 - ping 不可达",
        description: "A CVM instance stopped answering ping (firing)",
        event: || {
            cvm(
                "PingUnreachable",
                "1",
                "ins-5k3e9x2q",
                "ap-guangzhou",
                "10.0.1.23",
                json!({"IP": "10.0.1.23 unreachable"}),
            )
        },
    },
    EventTemplate {
        name: "cvm:PingUnreachable:recovered",
        label: "云服务器 - ping 不可达（已恢复）",
        description: "A CVM instance answers ping again (recovered)",
        event: || {
            cvm(
                "PingUnreachable",
                "0",
                "ins-5k3e9x2q",
                "ap-guangzhou",
                "10.0.1.23",
                json!({"IP": "10.0.1.23 reachable"}),
            )
        },
    },
    EventTemplate {
        name: "cvm:GuestCoreError",
        label: "云服务器 - 内核故障",
        description: "Kernel fatal error on a CVM instance",
        event: || {
            cvm(
                "GuestCoreError",
                "1",
                "ins-7p2m4n8r",
                "ap-beijing",
                "10.0.2.7",
                json!({"kernel": "BUG: unable to handle kernel NULL pointer dereference"}),
            )
        },
    },
    EventTemplate {
        name: "cvm:GuestOom",
        label: "云服务器 - 内存 OOM",
        description: "Out-of-memory on a CVM instance",
        event: || {
            cvm("GuestOom", "1", "ins-q9w8e7r6", "ap-shanghai", "10.0.0.45", json!({"process": "java", "pid": 2817}))
        },
    },
    EventTemplate {
        name: "cvm:DiskReadonly",
        label: "云服务器 - 磁盘只读",
        description: "A CVM instance's disk became read-only (firing)",
        event: || {
            cvm(
                "DiskReadonly",
                "1",
                "ins-z1x2c3v4",
                "ap-chengdu",
                "10.0.3.9",
                json!({"device": "/dev/vdb", "mountpoint": "/data"}),
            )
        },
    },
    EventTemplate {
        name: "clb:RsPortStatusChange",
        label: "负载均衡 - 后端端口健康检查异常",
        description: "A CLB backend port failed its health check (firing)",
        event: || {
            json!({
                "specversion": "1.0",
                "id": "",
                "source": "clb.cloud.tencent",
                "type": "clb:ErrorEvent:RsPortStatusChange",
                "subject": "lb-8f3k2m1n",
                "time": 0,
                "region": "ap-guangzhou",
                "datacontenttype": "application/json;charset=utf-8",
                "resource": ["qcs::clb:ap-guangzhou:uin/100000000001:clb/lb-8f3k2m1n"],
                "tags": {"env": "prod", "team": "web"},
                "status": "1",
                "data": {
                    "appId": "1250000011",
                    "instanceId": "lb-8f3k2m1n",
                    "projectId": "0",
                    "dimensions": {"vip": "203.0.113.10", "port": "443", "protocol": "HTTPS", "rsIp": "10.0.0.21", "rsPort": "8443"},
                    "additionalMsg": {"status": "unhealthy"}
                }
            })
        },
    },
];

fn cvm(name: &str, status: &str, instance: &str, region: &str, ip: &str, additional: Value) -> Value {
    json!({
        "specversion": "1.0",
        "id": "",
        "source": "cvm.cloud.tencent",
        "type": format!("cvm:ErrorEvent:{name}"),
        "subject": instance,
        "time": 0,
        "region": region,
        "datacontenttype": "application/json;charset=utf-8",
        "resource": [format!("qcs::cvm:{region}:uin/100000000001:instance/{instance}")],
        "tags": {"env": "prod"},
        "status": status,
        "data": {
            "appId": "1250000011",
            "instanceId": instance,
            "projectId": "0",
            "dimensions": {"unInstanceId": instance, "ip": ip},
            "additionalMsg": additional
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_valid_events_with_fresh_id_and_time() {
        for t in all() {
            let v = t.instantiate("id-1", 1_700_000_000_000);
            let e = crate::Event::accept(v, &Default::default(), 0, || unreachable!()).unwrap();
            assert_eq!(e.id, "id-1");
            assert_eq!(e.time_ms, 1_700_000_000_000);
            assert!(e.event_type().contains(":ErrorEvent:"), "{}", t.name);
        }
        assert_eq!(find("CVM:guestreboot").unwrap().name, "cvm:GuestReboot");
        assert_eq!(find("cvm:PingUnreachable:recovered").unwrap().instantiate("x", 1)["status"], "0");
    }
}
