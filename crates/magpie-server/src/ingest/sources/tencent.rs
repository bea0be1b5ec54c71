//! Tencent Cloud Monitor's alarm callback (告警回调): one alarm per request, metric or event.
//!
//! `source` `monitor.cloud.tencent`, `type` the metric's or the event's name, `subject` the
//! instance (`dimensions.unInstanceId`, else `objId`, `objName`), `status` `alarmStatus` (`"1"`
//! alarm, `"0"` resolved; a number is taken too), `time` `firstOccurTime` (alarm) or
//! `recoverTime` (resolved) — local times without an offset, `+08:00` unless the URL says
//! `?tz=` — `region` from `alarmObjInfo.region` (`gz` → `ap-guangzhou`), `fingerprint` the
//! policy id, `data` the whole callback.

use magpie_core::event::rfc3339_ms;
use serde_json::{Value, json};

use super::{Doc, SourceOptions, stable_id};
use crate::error::ApiError;

/// The offset of Cloud Monitor's times when the URL names none (China Standard Time).
const DEFAULT_TZ: &str = "+08:00";

pub(super) fn events(body: &Value, opts: &SourceOptions) -> Result<Value, ApiError> {
    let doc = Doc::root(body);
    doc.object()?;
    let status = match doc.get("alarmStatus")?.map(|d| d.value) {
        Some(Value::String(s)) if s == "1" || s == "0" => s.clone(),
        Some(Value::Number(n)) if n.as_i64() == Some(1) || n.as_i64() == Some(0) => n.to_string(),
        Some(other) => return Err(ApiError::field("alarmStatus", format!("expected \"1\" or \"0\", got {other}"))),
        None => {
            return Err(ApiError::field("alarmStatus", "missing: is this a Tencent Cloud Monitor alarm callback?"));
        }
    };
    let alarm_type = doc.str("alarmType")?.unwrap_or("metric");
    let obj = doc.need("alarmObjInfo", "")?;
    let policy = doc.need("alarmPolicyInfo", "")?;
    let conditions = policy.need("conditions", "")?;
    let name_field = match alarm_type {
        "metric" => "metricName",
        "event" => "eventName",
        other => {
            return Err(ApiError::field("alarmType", format!("expected \"metric\" or \"event\", got {other:?}")));
        }
    };
    let ty = conditions.need_str(name_field)?;
    let dims = obj.get("dimensions")?;
    let dim = |k: &str| -> Result<Option<String>, ApiError> {
        let Some(d) = &dims else { return Ok(None) };
        Ok(match d.get(k)?.map(|v| v.value) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        })
    };
    let policy_id = policy.str("policyId")?.unwrap_or_default();
    let subject = match (dim("unInstanceId")?, dim("objId")?, dim("objName")?) {
        (Some(s), _, _) | (None, Some(s), _) | (None, None, Some(s)) => s,
        _ => policy_id.to_string(),
    };
    if subject.is_empty() {
        return Err(ApiError::field("alarmObjInfo.dimensions", "no instance (unInstanceId, objId or objName) to name"));
    }
    let tz = opts.tz.as_deref().unwrap_or(DEFAULT_TZ);
    let first = local_time(&doc, "firstOccurTime", tz)?;
    let recover = local_time(&doc, "recoverTime", tz)?;
    let at = if status == "1" {
        first.ok_or_else(|| ApiError::field("firstOccurTime", "missing"))?
    } else {
        recover
            .or(first)
            .ok_or_else(|| ApiError::field("recoverTime", "a resolved alarm needs the time it recovered"))?
    };
    let text = |d: &Doc<'_>, k: &str| d.get(k).ok().flatten().map(|v| v.value.to_string()).unwrap_or_default();
    // A repeat of the alarm (alarmNotifyPeriod) carries a longer durationTime; a retry the same.
    let id = stable_id(
        "tcm",
        &[
            policy_id,
            &subject,
            ty,
            &text(&doc, "firstOccurTime"),
            &status,
            &text(&doc, "recoverTime"),
            &text(&doc, "durationTime"),
        ],
    );
    let mut event = json!({
        "specversion": "1.0",
        "id": id,
        "source": "monitor.cloud.tencent",
        "type": ty,
        "subject": subject,
        "time": at,
        "status": status,
        "datacontenttype": "application/json",
        "data": body,
    });
    if !policy_id.is_empty() {
        event["fingerprint"] = json!(policy_id);
    }
    if let Some(r) = obj.str("region")?.filter(|r| !r.is_empty()) {
        event["region"] = json!(region(r));
    }
    Ok(event)
}

/// `"YYYY-MM-DD HH:MM:SS"` at offset `tz`, in ms; `"0"`, `""` and absent are no time.
fn local_time(doc: &Doc<'_>, key: &str, tz: &str) -> Result<Option<i64>, ApiError> {
    let Some(t) = doc.str(key)? else { return Ok(None) };
    let t = t.trim();
    if t.is_empty() || t == "0" {
        return Ok(None);
    }
    let iso = match t.split_once(' ') {
        Some((date, time)) => format!("{date}T{time}{tz}"),
        None => t.to_string(),
    };
    match rfc3339_ms(&iso) {
        Some(ms) if ms >= 0 => Ok(Some(ms)),
        _ => Err(ApiError::field(key, format!("expected \"YYYY-MM-DD HH:MM:SS\", got {t:?}"))),
    }
}

/// Cloud Monitor's short region codes as Tencent Cloud's region names; others as they are.
fn region(code: &str) -> String {
    let name = match code {
        "gz" => "ap-guangzhou",
        "sh" => "ap-shanghai",
        "bj" => "ap-beijing",
        "cd" => "ap-chengdu",
        "cq" => "ap-chongqing",
        "nj" => "ap-nanjing",
        "hk" => "ap-hongkong",
        "sg" => "ap-singapore",
        "th" => "ap-bangkok",
        "jkt" => "ap-jakarta",
        "kr" => "ap-seoul",
        "jp" => "ap-tokyo",
        "in" => "ap-mumbai",
        "ca" => "na-toronto",
        "usw" => "na-siliconvalley",
        "use" => "na-ashburn",
        "de" => "eu-frankfurt",
        "sao" => "sa-saopaulo",
        "szjr" => "ap-shenzhen-fsi",
        "shjr" => "ap-shanghai-fsi",
        "bjjr" => "ap-beijing-fsi",
        other => other,
    };
    name.to_string()
}

/// Whether `tz` is an offset `±HH:MM`.
pub(super) fn valid_tz(tz: &str) -> bool {
    let b = tz.as_bytes();
    b.len() == 6
        && matches!(b[0], b'+' | b'-')
        && b[3] == b':'
        && [1, 2, 4, 5].iter().all(|&i| b[i].is_ascii_digit())
        && rfc3339_ms(&format!("2000-01-01T00:00:00{tz}")).is_some()
}
