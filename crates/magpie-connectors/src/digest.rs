//! Storm folding: the messages waiting for one connection, told as one digest.
//!
//! A digest has a headline with the count (by firing / recovered and by event type), the first
//! messages as their flows rendered them, "… and N more", and a link to the full list — in the
//! platform's own dialect (WeCom markdown with font colours, DingTalk markdown, a Feishu/Lark
//! post) and within its size limit, measured in bytes as the platform counts them. Chinese for
//! WeCom, DingTalk and Feishu; English for Lark.
//!
//! Pure: the outbox decides when to fold and what; this module only writes the digest.

use std::collections::BTreeMap;

use magpie_core::OutboundMessage;
use magpie_core::config::{MessageKind, Platform};
use serde_json::{Value, json};

use crate::{Destination, build_request, content_text, truncate_utf8};

/// Whether an alert is firing or recovered (the event's `status`: "1" abnormal, "0" recovered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertState {
    /// `status` "1": abnormal.
    Firing,
    /// `status` "0": recovered.
    Recovered,
    /// Anything else ("-" stateless, or no status).
    Other,
}

impl AlertState {
    /// The state of an event's `status` field.
    pub fn from_status(status: Option<&str>) -> AlertState {
        match status {
            Some("1") => AlertState::Firing,
            Some("0") => AlertState::Recovered,
            _ => AlertState::Other,
        }
    }
}

/// One waiting message, as its flow rendered it.
#[derive(Debug, Clone, Copy)]
pub struct DigestItem<'a> {
    /// The message.
    pub message: &'a OutboundMessage,
    /// The event's type (for the headline's count by type).
    pub event_type: &'a str,
    /// Firing or recovered.
    pub state: AlertState,
}

/// A digest ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Digest {
    /// The message (of the items' kind).
    pub message: OutboundMessage,
    /// How many items are shown in full; the rest are counted.
    pub shown: usize,
}

/// Most bytes of a digest: WeCom counts the markdown/text content, DingTalk and Feishu/Lark the
/// whole body (kept under their 20,000 with room for signatures).
fn limit(platform: Platform, kind: MessageKind) -> usize {
    match (platform, kind) {
        (Platform::Wecom, MessageKind::Text) => crate::wecom::MAX_TEXT_BYTES,
        (Platform::Wecom, _) => crate::wecom::MAX_MARKDOWN_BYTES,
        (Platform::Dingtalk, _) => crate::dingtalk::MAX_BODY_BYTES - 500,
        (Platform::Feishu | Platform::Lark, _) => crate::feishu::MAX_BODY_BYTES - 500,
    }
}

struct Words {
    headline: fn(usize) -> String,
    firing: &'static str,
    recovered: &'static str,
    other: &'static str,
    more: fn(usize) -> String,
    more_types: fn(usize) -> String,
    link: fn(usize) -> String,
}

const ZH: Words = Words {
    headline: |n| format!("Magpie 告警汇总：{n} 条"),
    firing: "告警",
    recovered: "恢复",
    other: "通知",
    more: |k| format!("…… 另有 {k} 条未展开"),
    more_types: |k| format!("等 {k} 类"),
    link: |n| format!("查看全部 {n} 条"),
};

const EN: Words = Words {
    headline: |n| format!("Magpie digest: {n} alerts"),
    firing: "firing",
    recovered: "recovered",
    other: "other",
    more: |k| format!("… and {k} more"),
    more_types: |k| format!("and {k} more types"),
    link: |n| format!("Full list of {n}"),
};

fn words(platform: Platform) -> &'static Words {
    match platform {
        Platform::Lark => &EN,
        _ => &ZH,
    }
}

/// The counts of the headline, computed once for all items.
struct Summary {
    total: usize,
    firing: usize,
    recovered: usize,
    other: usize,
    /// Event types by count, most frequent first (ties in order of first appearance).
    types: Vec<(String, usize)>,
    /// The title every item shares, if they all have the same one.
    shared_title: Option<String>,
}

fn summarize(items: &[DigestItem<'_>]) -> Summary {
    let (mut firing, mut recovered, mut other) = (0, 0, 0);
    let mut by_type: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (i, it) in items.iter().enumerate() {
        match it.state {
            AlertState::Firing => firing += 1,
            AlertState::Recovered => recovered += 1,
            AlertState::Other => other += 1,
        }
        by_type.entry(it.event_type).or_insert((0, i)).0 += 1;
    }
    let mut types: Vec<(&str, (usize, usize))> = by_type.into_iter().collect();
    types.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.1.1.cmp(&b.1.1)));
    let first = items.first().and_then(|i| i.message.title.clone());
    let shared_title = first.filter(|t| !t.is_empty() && items.iter().all(|i| i.message.title.as_ref() == Some(t)));
    Summary {
        total: items.len(),
        firing,
        recovered,
        other,
        types: types.into_iter().map(|(t, (n, _))| (if t.is_empty() { "-" } else { t }.to_string(), n)).collect(),
        shared_title,
    }
}

const TYPES_SHOWN: usize = 5;

fn types_line(s: &Summary, w: &Words) -> String {
    let mut parts: Vec<String> = s.types.iter().take(TYPES_SHOWN).map(|(t, n)| format!("{t} ×{n}")).collect();
    if s.types.len() > TYPES_SHOWN {
        parts.push((w.more_types)(s.types.len()));
    }
    parts.join(", ")
}

/// The item as text lines (a post's paragraphs joined tag by tag).
fn item_text(it: &DigestItem<'_>, with_title: bool) -> String {
    let body = match &it.message.content {
        Value::Array(paragraphs) => paragraphs
            .iter()
            .map(|p| match p {
                Value::Array(nodes) => nodes.iter().map(node_text).collect::<String>(),
                other => content_text(other),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        other => content_text(other),
    };
    let body = body.trim_matches('\n').to_string();
    match (&it.message.title, with_title) {
        (Some(t), true) if !t.is_empty() => format!("{t}\n{body}"),
        _ => body,
    }
}

fn node_text(n: &Value) -> String {
    match n.get("tag").and_then(Value::as_str) {
        Some("at") => format!("@{}", n.get("user_name").or(n.get("user_id")).and_then(Value::as_str).unwrap_or("")),
        _ => n.get("text").and_then(Value::as_str).unwrap_or_default().to_string(),
    }
}

/// The item as post paragraphs (its own, when its flow wrote a post).
fn item_paragraphs(it: &DigestItem<'_>, with_title: bool) -> Vec<Value> {
    let mut out = Vec::new();
    if with_title && let Some(t) = it.message.title.as_deref().filter(|t| !t.is_empty()) {
        out.push(json!([{"tag": "text", "text": t}]));
    }
    match &it.message.content {
        Value::Array(ps) if ps.iter().all(Value::is_array) => out.extend(ps.iter().cloned()),
        other => {
            let text = content_text(other);
            for line in text.trim_matches('\n').lines() {
                let plain = line.trim_start().trim_start_matches(['#', '>']).trim_start().replace("**", "");
                out.push(json!([{"tag": "text", "text": plain}]));
            }
        }
    }
    out
}

fn render(
    platform: Platform,
    kind: MessageKind,
    s: &Summary,
    shown: &[DigestItem<'_>],
    truncate_first: Option<usize>,
    link: &str,
) -> OutboundMessage {
    let w = words(platform);
    let headline = match &s.shared_title {
        Some(t) => format!("{t} · {}", (w.headline)(s.total)),
        None => (w.headline)(s.total),
    };
    let with_title = s.shared_title.is_none();
    let rest = s.total - shown.len();
    let mut texts: Vec<String> = shown.iter().map(|it| item_text(it, with_title)).collect();
    if let (Some(max), Some(first)) = (truncate_first, texts.first_mut()) {
        *first = truncate_utf8(first, max);
    }
    let counts = |colour: bool| {
        let mut parts = Vec::new();
        for (n, word, c) in
            [(s.firing, w.firing, "warning"), (s.recovered, w.recovered, "info"), (s.other, w.other, "comment")]
        {
            if n > 0 {
                parts.push(if colour {
                    format!("<font color=\"{c}\">{word} {n}</font>")
                } else {
                    format!("{word} {n}")
                });
            }
        }
        parts.join(" · ")
    };
    let more = (rest > 0).then(|| (w.more)(rest));
    let link_text = (w.link)(s.total);
    match (platform, kind) {
        (Platform::Feishu | Platform::Lark, MessageKind::Post | MessageKind::Markdown) => {
            let mut ps = vec![
                json!([{"tag": "text", "text": counts(false)}]),
                json!([{"tag": "text", "text": types_line(s, w)}]),
            ];
            for (i, it) in shown.iter().enumerate() {
                ps.push(json!([{"tag": "text", "text": ""}]));
                match (i, truncate_first) {
                    (0, Some(_)) => ps.extend(texts[0].lines().map(|l| json!([{"tag": "text", "text": l}]))),
                    _ => ps.extend(item_paragraphs(it, with_title)),
                }
            }
            ps.push(json!([{"tag": "text", "text": ""}]));
            if let Some(m) = &more {
                ps.push(json!([{"tag": "text", "text": m}]));
            }
            ps.push(json!([{"tag": "a", "text": link_text, "href": link}]));
            OutboundMessage { kind, title: Some(headline), content: Value::Array(ps) }
        }
        (Platform::Wecom, MessageKind::Markdown | MessageKind::Post) => {
            let head = format!("**{headline}**\n> {}\n> {}\n", counts(true), types_line(s, w));
            let out = blocks(head, &texts, more.as_deref(), &format!("[{link_text}]({link})"));
            OutboundMessage { kind, title: None, content: Value::String(out) }
        }
        (Platform::Dingtalk, MessageKind::Markdown | MessageKind::Post) => {
            let mut out = format!("#### {headline}\n\n> {}\n\n> {}\n", counts(false), types_line(s, w));
            for t in &texts {
                out.push_str("\n\n");
                // DingTalk collapses single newlines: each line of an item is its own paragraph.
                let lines: Vec<&str> = t.lines().map(str::trim_end).filter(|l| !l.trim().is_empty()).collect();
                out.push_str(&lines.join("\n\n"));
            }
            if let Some(m) = &more {
                out.push_str("\n\n");
                out.push_str(m);
            }
            out.push_str(&format!("\n\n[{link_text}]({link})"));
            OutboundMessage { kind, title: Some(headline), content: Value::String(out) }
        }
        (_, MessageKind::Text) => {
            let head = format!("{headline}\n{}\n{}\n", counts(false), types_line(s, w));
            let out = blocks(head, &texts, more.as_deref(), &format!("{link_text}: {link}"));
            OutboundMessage { kind, title: None, content: Value::String(out) }
        }
    }
}

/// The headline, each item and the "more" line as blocks separated by blank lines, then the link.
fn blocks(mut out: String, texts: &[String], more: Option<&str>, link: &str) -> String {
    for t in texts.iter().map(String::as_str).chain(more) {
        out.push('\n');
        out.push_str(t);
        out.push('\n');
    }
    out.push_str(link);
    out
}

/// The size of `msg` as the platform counts it (see [`limit`]).
fn size(platform: Platform, msg: &OutboundMessage, keywords: &[String]) -> usize {
    match platform {
        Platform::Wecom => content_text(&msg.content).len(),
        Platform::Dingtalk | Platform::Feishu | Platform::Lark => {
            let webhook = match platform {
                Platform::Dingtalk => "https://oapi.dingtalk.com/robot/send?access_token=measure",
                _ => "https://open.feishu.cn/open-apis/bot/v2/hook/measure",
            };
            let dest = Destination { platform, webhook: webhook.into(), secret: None, keywords: keywords.to_vec() };
            match build_request(&dest, msg, 0) {
                Ok(r) => r.body_bytes().len(),
                Err(_) => usize::MAX,
            }
        }
    }
}

/// Folds `items` (at least one; all of `kind`) into one digest for `platform`, linking to the full
/// list at `link`. `keywords` are the connection's, which the request builder may prepend.
pub fn fold(
    platform: Platform,
    kind: MessageKind,
    items: &[DigestItem<'_>],
    link: &str,
    keywords: &[String],
) -> Digest {
    let s = summarize(items);
    let max = limit(platform, kind);
    let fits = |k: usize| size(platform, &render(platform, kind, &s, &items[..k], None, link), keywords) <= max;
    // Items whose raw text alone exceeds the limit cannot all fit: bound the search by that.
    let mut hi = 0;
    let mut raw = 0;
    while hi < items.len() && raw <= max {
        raw += item_text(&items[hi], s.shared_title.is_none()).len();
        hi += 1;
    }
    let (mut lo, mut hi) = (0usize, hi);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if fits(mid) { lo = mid } else { hi = mid - 1 }
    }
    if lo > 0 || items.is_empty() {
        return Digest { message: render(platform, kind, &s, &items[..lo], None, link), shown: lo };
    }
    // Not even the first item fits whole: show it cut, so the digest still says what it is.
    let base = size(platform, &render(platform, kind, &s, &[], None, link), keywords);
    let room = max.saturating_sub(base).saturating_sub(64);
    if room > 200 {
        let mut cut = room;
        while cut > 200 {
            let m = render(platform, kind, &s, &items[..1], Some(cut), link);
            if size(platform, &m, keywords) <= max {
                return Digest { message: m, shown: 1 };
            }
            cut = cut * 3 / 4;
        }
    }
    Digest { message: render(platform, kind, &s, &[], None, link), shown: 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(content: &str) -> OutboundMessage {
        OutboundMessage { kind: MessageKind::Markdown, title: None, content: json!(content) }
    }

    fn items<'a>(msgs: &'a [OutboundMessage], types: &'a [&'a str], states: &[AlertState]) -> Vec<DigestItem<'a>> {
        msgs.iter()
            .enumerate()
            .map(|(i, m)| DigestItem {
                message: m,
                event_type: types[i % types.len()],
                state: states[i % states.len()],
            })
            .collect()
    }

    #[test]
    fn wecom_digest_counts_shows_the_first_and_fits_4096_bytes() {
        let msgs: Vec<OutboundMessage> = (0..500)
            .map(|i| {
                md(&format!(
                    "<font color=\"warning\">收到告警</font>\n> 实例 ID:<font color=\"comment\">ins-{i:04}</font>"
                ))
            })
            .collect();
        let its = items(
            &msgs,
            &["cvm:ErrorEvent:GuestReboot", "cvm:ErrorEvent:GuestReboot", "cvm:ErrorEvent:PingUnreachable"],
            &[AlertState::Firing, AlertState::Firing, AlertState::Firing, AlertState::Recovered],
        );
        let d = fold(Platform::Wecom, MessageKind::Markdown, &its, "http://m/v1/digests/d1", &[]);
        let text = d.message.content.as_str().unwrap();
        assert!(text.len() <= 4096, "{}", text.len());
        assert!(text.starts_with("**Magpie 告警汇总：500 条**"), "{text}");
        assert!(
            text.contains("<font color=\"warning\">告警 375</font> · <font color=\"info\">恢复 125</font>"),
            "{text}"
        );
        assert!(text.contains("cvm:ErrorEvent:GuestReboot ×334, cvm:ErrorEvent:PingUnreachable ×166"), "{text}");
        assert!(text.contains("ins-0000") && text.contains(&format!("ins-{:04}", d.shown - 1)));
        assert!(!text.contains(&format!("ins-{:04}", d.shown)), "only the first {} are shown", d.shown);
        assert!(d.shown > 10 && d.shown < 500);
        assert!(text.contains(&format!("另有 {} 条未展开", 500 - d.shown)), "{text}");
        assert!(text.ends_with("[查看全部 500 条](http://m/v1/digests/d1)"), "{text}");
        // Adding one more item would not have fitted.
        let one_more = render(
            Platform::Wecom,
            MessageKind::Markdown,
            &summarize(&its),
            &its[..d.shown + 1],
            None,
            "http://m/v1/digests/d1",
        );
        assert!(one_more.content.as_str().unwrap().len() > 4096);
    }

    #[test]
    fn everything_shown_when_it_fits_and_no_more_line() {
        let msgs = vec![md("a"), md("b")];
        let its = items(&msgs, &["t"], &[AlertState::Other]);
        let d = fold(Platform::Wecom, MessageKind::Markdown, &its, "http://x", &[]);
        assert_eq!(d.shown, 2);
        let text = d.message.content.as_str().unwrap();
        assert!(!text.contains("另有"), "{text}");
        assert!(text.contains("\na\n") && text.contains("\nb\n"));
    }

    #[test]
    fn feishu_post_digest_keeps_paragraphs_and_builds_under_20_kb() {
        let msgs: Vec<OutboundMessage> = (0..300)
            .map(|i| OutboundMessage {
                kind: MessageKind::Post,
                title: Some("收到告警信息，请及时处理".into()),
                content: json!([[{"tag": "text", "text": format!("实例 ID: ins-{i}")}], [{"tag": "text", "text": "地域: ap-guangzhou"}]]),
            })
            .collect();
        let its = items(&msgs, &["cvm:ErrorEvent:GuestOom"], &[AlertState::Firing]);
        let d = fold(Platform::Feishu, MessageKind::Post, &its, "http://m/v1/digests/x", &["告警".into()]);
        assert_eq!(d.message.title.as_deref(), Some("收到告警信息，请及时处理 · Magpie 告警汇总：300 条"));
        let dest = Destination {
            platform: Platform::Feishu,
            webhook: "https://open.feishu.cn/open-apis/bot/v2/hook/t".into(),
            secret: Some("s".into()),
            keywords: vec!["告警".into()],
        };
        let req = build_request(&dest, &d.message, 1_700_000_000_000).unwrap();
        assert!(req.body_bytes().len() <= 20_000, "{}", req.body_bytes().len());
        let ps = req.body["content"]["post"]["zh_cn"]["content"].as_array().unwrap();
        assert_eq!(ps.last().unwrap()[0]["tag"], "a");
        assert_eq!(ps.last().unwrap()[0]["href"], "http://m/v1/digests/x");
        assert!(ps.iter().any(|p| p[0]["text"] == "实例 ID: ins-0"));
        assert!(d.shown < 300);
    }

    #[test]
    fn dingtalk_and_lark_dialects() {
        let msgs: Vec<OutboundMessage> = (0..3).map(|i| md(&format!("#### 告警 {i}\n> line"))).collect();
        let its = items(&msgs, &["x"], &[AlertState::Firing]);
        let d = fold(Platform::Dingtalk, MessageKind::Markdown, &its, "http://l", &["告警".into()]);
        assert_eq!(d.message.title.as_deref(), Some("Magpie 告警汇总：3 条"));
        assert!(d.message.content.as_str().unwrap().contains("#### 告警 2\n\n> line"));
        let d = fold(Platform::Lark, MessageKind::Text, &its, "http://l", &[]);
        let text = d.message.content.as_str().unwrap();
        assert!(text.starts_with("Magpie digest: 3 alerts\nfiring 3\n"), "{text}");
        assert!(text.ends_with("Full list of 3: http://l"));
    }

    #[test]
    fn one_huge_message_is_cut_not_dropped() {
        let big = md(&"告".repeat(5000));
        let msgs = vec![big.clone(), big];
        let its = items(&msgs, &["x"], &[AlertState::Firing]);
        let d = fold(Platform::Wecom, MessageKind::Markdown, &its, "http://l", &[]);
        let text = d.message.content.as_str().unwrap();
        assert!(text.len() <= 4096);
        assert_eq!(d.shown, 1);
        assert!(text.contains("告告告") && text.contains("另有 1 条"));
    }
}
