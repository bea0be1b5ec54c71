//! The console's two languages: 中文 and English. The choice is a cookie set by the switch in
//! the header; without it, the browser's `Accept-Language` decides.

use axum::http::{HeaderMap, header};

/// A console language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// 中文.
    Zh,
    /// English.
    En,
}

/// The language cookie.
pub const LANG_COOKIE: &str = "magpie_lang";

impl Lang {
    /// The language of a request: its cookie, else the browser's first preference.
    pub fn of(headers: &HeaderMap) -> Lang {
        match super::cookie(headers, LANG_COOKIE) {
            Some("zh") => return Lang::Zh,
            Some("en") => return Lang::En,
            _ => {}
        }
        let accept = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        if accept.trim_start().to_ascii_lowercase().starts_with("zh") { Lang::Zh } else { Lang::En }
    }

    /// The code (`zh`, `en`).
    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }

    /// The other language, for the switch.
    pub fn other(self) -> Lang {
        match self {
            Lang::Zh => Lang::En,
            Lang::En => Lang::Zh,
        }
    }

    /// How the switch names this language.
    pub fn label(self) -> &'static str {
        match self {
            Lang::Zh => "中文",
            Lang::En => "English",
        }
    }

    /// The console's words in this language.
    pub fn text(self) -> &'static Text {
        match self {
            Lang::Zh => &ZH,
            Lang::En => &EN,
        }
    }
}

/// Every word the console shows.
pub struct Text {
    pub buses: &'static str,
    pub rules: &'static str,
    pub templates: &'static str,
    pub events: &'static str,
    pub flows: &'static str,
    pub connections: &'static str,
    pub dead_letters: &'static str,
    pub alerts: &'static str,
    pub silences: &'static str,
    pub outbox: &'static str,
    pub send_test: &'static str,
    pub new_bus: &'static str,
    pub toggle: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub enabled: &'static str,
    pub targets: &'static str,
    pub pattern: &'static str,
    pub edit: &'static str,
    pub new_rule: &'static str,
    pub save: &'static str,
    pub saved: &'static str,
    pub send: &'static str,
    pub send_event: &'static str,
    pub time: &'static str,
    pub type_: &'static str,
    pub subject: &'static str,
    pub status: &'static str,
    pub filter: &'static str,
    pub trace: &'static str,
    pub rules_matched: &'static str,
    pub flow_runs: &'static str,
    pub steps: &'static str,
    pub deliveries: &'static str,
    pub attempts: &'static str,
    pub answer: &'static str,
    pub live: &'static str,
    pub draft: &'static str,
    pub publish: &'static str,
    pub save_draft: &'static str,
    pub draft_vs_live: &'static str,
    pub no_draft: &'static str,
    pub platform: &'static str,
    pub webhook: &'static str,
    pub secret: &'static str,
    pub error: &'static str,
    pub pattern_ok: &'static str,
    pub test_against: &'static str,
    pub or_paste: &'static str,
    pub matched: &'static str,
    pub not_matched: &'static str,
    pub login: &'static str,
    pub token: &'static str,
    pub bad_token: &'static str,
    /// An ingest token tried to log in.
    pub ingest_token: &'static str,
    pub logout: &'static str,
    pub none: &'static str,
    pub key: &'static str,
    pub state: &'static str,
    pub fired: &'static str,
    pub yaml: &'static str,
    pub dry_run: &'static str,
    pub dry_run_hint: &'static str,
}

static ZH: Text = Text {
    buses: "事件集",
    rules: "事件规则",
    templates: "事件模板",
    events: "事件",
    flows: "集成流",
    connections: "连接器",
    dead_letters: "死信",
    alerts: "告警",
    silences: "静默",
    outbox: "发件箱",
    send_test: "发送测试消息",
    new_bus: "新建或修改事件集",
    toggle: "启用/停用",
    name: "名称",
    description: "描述",
    enabled: "启用",
    targets: "投递目标",
    pattern: "事件模式",
    edit: "编辑",
    new_rule: "新建规则",
    save: "保存",
    saved: "已保存",
    send: "发送",
    send_event: "发送事件",
    time: "时间",
    type_: "类型",
    subject: "主体",
    status: "状态",
    filter: "筛选",
    trace: "事件轨迹",
    rules_matched: "命中规则",
    flow_runs: "集成流运行",
    steps: "步骤",
    deliveries: "消息",
    attempts: "投递尝试",
    answer: "机器人应答",
    live: "运行中版本",
    draft: "草稿",
    publish: "发布",
    save_draft: "保存草稿",
    draft_vs_live: "草稿与运行中版本的差异",
    no_draft: "没有草稿：编辑并保存即可生成草稿",
    platform: "平台",
    webhook: "Webhook",
    secret: "密钥",
    error: "错误",
    pattern_ok: "事件模式有效",
    test_against: "用模板测试",
    or_paste: "或粘贴一个事件测试",
    matched: "匹配",
    not_matched: "不匹配",
    login: "登录",
    token: "令牌",
    bad_token: "令牌不正确",
    ingest_token: "该令牌的角色为 ingest，只能发送事件，不能登录控制台",
    logout: "退出",
    none: "无",
    key: "告警键",
    state: "状态",
    fired: "触发次数",
    yaml: "YAML",
    dry_run: "试运行",
    dry_run_hint: "用模板运行此版本，预览机器人将显示的消息；不会发送",
};

static EN: Text = Text {
    buses: "Buses",
    rules: "Rules",
    templates: "Event templates",
    events: "Events",
    flows: "Flows",
    connections: "Connections",
    dead_letters: "Dead letters",
    alerts: "Alerts",
    silences: "Silences",
    outbox: "Outbox",
    send_test: "Send a test message",
    new_bus: "Create or change a bus",
    toggle: "Enable/disable",
    name: "Name",
    description: "Description",
    enabled: "Enabled",
    targets: "Targets",
    pattern: "Event pattern",
    edit: "Edit",
    new_rule: "New rule",
    save: "Save",
    saved: "Saved",
    send: "Send",
    send_event: "Send event",
    time: "Time",
    type_: "Type",
    subject: "Subject",
    status: "Status",
    filter: "Filter",
    trace: "Trace",
    rules_matched: "Rules matched",
    flow_runs: "Flow runs",
    steps: "Steps",
    deliveries: "Messages",
    attempts: "Delivery attempts",
    answer: "Robot's answer",
    live: "Live version",
    draft: "Draft",
    publish: "Publish",
    save_draft: "Save draft",
    draft_vs_live: "Draft against live",
    no_draft: "No draft: edit and save to make one",
    platform: "Platform",
    webhook: "Webhook",
    secret: "Secret",
    error: "Error",
    pattern_ok: "The pattern is valid",
    test_against: "Test against a template",
    or_paste: "or against a pasted event",
    matched: "matched",
    not_matched: "not matched",
    login: "Log in",
    token: "Token",
    bad_token: "That token is not valid",
    ingest_token: "This token's role is ingest: it may send events, not use the console",
    logout: "Log out",
    none: "none",
    key: "Key",
    state: "State",
    fired: "Fired",
    yaml: "YAML",
    dry_run: "Dry run",
    dry_run_hint: "runs this version over a template and previews each message as the robot will show it; sends nothing",
};
