//! `magpie`: the command line over the server, the pattern language, flows and the robot
//! simulator.

mod client;
mod cmd_alerts;
mod cmd_archive;
mod cmd_events;
mod cmd_flow;
mod cmd_letters;
mod cmd_objects;
mod cmd_pattern;
mod cmd_security;
mod cmd_serve;
mod cmd_versions;
mod trace_view;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Magpie — a self-hosted event bus and integration-flow engine.
#[derive(Parser)]
#[command(name = "magpie", version, about, long_about = None)]
struct Cli {
    /// The Magpie server the client commands talk to (listed in their help's footer, not in the
    /// offline commands').
    #[arg(long, global = true, hide = true, env = "MAGPIE_SERVER", default_value = "http://127.0.0.1:7480")]
    server: String,
    /// The API token: client commands send it (`Authorization: Bearer`); `serve` requires it.
    #[arg(long, global = true, hide = true, env = "MAGPIE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (HTTP API, router, workers).
    Serve(cmd_serve::ServeArgs),
    /// Send events, list and send templates, show traces.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Test patterns offline.
    #[command(subcommand)]
    Pattern(PatternCommand),
    /// Run flows offline.
    #[command(subcommand)]
    Flow(FlowCommand),
    /// Run the robot simulator alone.
    Robots(cmd_serve::RobotsArgs),
    /// Apply a configuration file (buses, connections, flows, rules) to the server; flows are
    /// published unless --draft.
    Apply(ApplyArgs),
    /// Event buses (事件集): list, get, delete.
    #[command(subcommand)]
    Buses(ObjectsCommand),
    /// Rules (事件规则) of a bus: list, get, delete.
    Rules {
        #[command(subcommand)]
        verb: ObjectsCommand,
        /// The bus.
        #[arg(long, global = true, default_value = "default")]
        bus: String,
    },
    /// Flows (集成流): list, get, delete (drafts and publishing: `magpie flow`).
    #[command(subcommand)]
    Flows(ObjectsCommand),
    /// Connections (robots): list, get, delete; secrets are shown masked.
    #[command(subcommand)]
    Connections(ObjectsCommand),
    /// Messages that could not be delivered and runs that failed: list, show, redrive.
    #[command(subcommand, name = "dead-letters")]
    DeadLetters(LettersCommand),
    /// Alerts (events with status "1"/"0") as their rules track them: firing, resolved.
    Alerts {
        /// firing, resolved or all.
        #[arg(long, default_value = "firing", value_parser = ["firing", "resolved", "all"])]
        state: String,
        /// Only this bus.
        #[arg(long)]
        bus: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Silences (maintenance windows): matching events are routed and traced, no flow is told.
    #[command(subcommand)]
    Silence(SilenceCommand),
    /// API tokens and their roles: admin, operator, ingest, viewer.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Secrets sealed at rest: re-seal them under a new key.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// The audit log: every change, who made it, before and after (secrets masked).
    Audit {
        /// Only changes by this token name.
        #[arg(long)]
        who: Option<String>,
        /// Only targets starting with this (connection, "flow eb-wecom", token, silence).
        #[arg(long)]
        target: Option<String>,
        /// At most this many, newest first.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON (with before and after).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a token: prints it once, and the hash to put in magpie.yaml's auth.tokens (offline);
    /// with --on-server the server creates and keeps it (needs an admin token).
    Create {
        /// Who holds it (recorded in the audit log).
        name: String,
        /// admin, operator, ingest or viewer.
        #[arg(long)]
        role: String,
        /// Create it on the server (POST /v1/tokens) instead of printing a hash for magpie.yaml.
        #[arg(long)]
        on_server: bool,
    },
    /// The server's tokens: name, role, where each comes from.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token created on the server.
    Revoke {
        /// The token's name.
        name: String,
    },
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Re-seal every connection's secrets under a new key (stop the server first). With the key
    /// in MAGPIE_SECRET_KEY, put the new one in MAGPIE_NEW_SECRET_KEY; else the data directory's
    /// secret.key is replaced.
    Rotate {
        /// The data directory.
        #[arg(long, env = "MAGPIE_DATA_DIR", default_value = "magpie-data")]
        data_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum SilenceCommand {
    /// Silence events matching a pattern for a while.
    Add {
        /// The pattern file (JSON, the rules' pattern language).
        #[arg(long)]
        pattern: PathBuf,
        /// How long (2h, 30m), from --start.
        #[arg(long = "for", conflicts_with = "until")]
        duration: Option<String>,
        /// Until when (RFC 3339 time or epoch ms).
        #[arg(long)]
        until: Option<String>,
        /// From when (default now).
        #[arg(long)]
        start: Option<String>,
        /// Why (required).
        #[arg(long)]
        comment: String,
        /// Only events of this bus (default every bus).
        #[arg(long)]
        bus: Option<String>,
        /// Who creates it (default $USER).
        #[arg(long)]
        created_by: Option<String>,
    },
    /// Silences that have not ended.
    List {
        /// Ended ones too.
        #[arg(long)]
        all: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// End a silence now: alerts it kept quiet that still fire are told once.
    Expire {
        /// The silence's id.
        id: String,
    },
}

#[derive(Args)]
struct LetterFilterArgs {
    /// Only letters of this flow.
    #[arg(long)]
    flow: Option<String>,
    /// Only letters of this connection.
    #[arg(long)]
    connection: Option<String>,
    /// Only this error type: NS:KIND (WECOM:AUTH) or a kind of any namespace (AUTH).
    #[arg(long)]
    error_type: Option<String>,
    /// Only letters since: a duration back (1h) or a time (RFC 3339).
    #[arg(long)]
    since: Option<String>,
}

impl LetterFilterArgs {
    fn into_filter(self) -> cmd_letters::Filter {
        cmd_letters::Filter {
            flow: self.flow,
            connection: self.connection,
            error_type: self.error_type,
            since: self.since,
        }
    }
}

#[derive(Subcommand)]
enum LettersCommand {
    /// List open dead letters, newest first.
    List {
        #[command(flatten)]
        filter: LetterFilterArgs,
        /// Include letters already redriven.
        #[arg(long)]
        redriven: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one dead letter: its event, step, error, every attempt, and earlier letters.
    Show {
        /// The letter's id.
        id: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Redrive letters: failed messages are queued again, stopped runs resume from the failed step.
    Redrive {
        /// Letter ids.
        ids: Vec<i64>,
        /// Every open letter.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        filter: LetterFilterArgs,
    },
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Put events on a bus: FILE holds one event, {"entries": [...]}, an array, or JSON lines.
    Put {
        /// The bus.
        #[arg(long, default_value = "default")]
        bus: String,
        /// The file, or - for standard input.
        file: String,
    },
    /// List the built-in event templates (默认模板).
    Templates {
        /// Print the templates' events as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send a built-in template with a fresh id and time.
    SendTemplate {
        /// Template name, e.g. cvm:GuestReboot (see `magpie events templates`).
        name: String,
        /// The bus.
        #[arg(long, default_value = "default")]
        bus: String,
    },
    /// Show what happened to an event: rules matched, flow runs, steps, delivery attempts.
    Trace {
        /// The event id.
        id: String,
        /// Print the raw JSON trace.
        #[arg(long)]
        json: bool,
    },
    /// List archived events, newest first.
    List {
        /// Only this bus.
        #[arg(long)]
        bus: Option<String>,
        /// Only events received since: a duration back (1h) or a time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Only this event type.
        #[arg(long = "type")]
        event_type: Option<String>,
        /// Only this subject.
        #[arg(long)]
        subject: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// One JSON event per line.
        #[arg(long)]
        json: bool,
    },
    /// Route archived events again through today's rules into their flows.
    Replay {
        /// The bus.
        #[arg(long, default_value = "default")]
        bus: String,
        /// Events received since: a duration back (1h) or a time.
        #[arg(long, conflicts_with_all = ["from", "to"])]
        since: Option<String>,
        /// Events received from this time (with --to).
        #[arg(long, requires = "to")]
        from: Option<String>,
        /// Events received before this time (with --from).
        #[arg(long, requires = "from")]
        to: Option<String>,
        /// Only through this rule.
        #[arg(long)]
        rule: Option<String>,
        /// Print what would be sent; send nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Send a storm of sample alerts at once and watch the outboxes fold and drain it.
    Storm {
        /// How many alerts.
        #[arg(long, default_value_t = 300)]
        count: usize,
        /// The template of each (a fresh id and subject each).
        #[arg(long, default_value = "cvm:PingUnreachable")]
        template: String,
        /// The bus.
        #[arg(long, default_value = "default")]
        bus: String,
        /// Send and return, without watching the outboxes.
        #[arg(long)]
        no_watch: bool,
    },
}

#[derive(Subcommand)]
enum PatternCommand {
    /// Test one pattern against one event. Exit 0 on match, 1 on no match, 2 when invalid.
    Test {
        /// The pattern file (JSON).
        #[arg(long)]
        pattern: PathBuf,
        /// The event file (JSON).
        #[arg(long)]
        event: PathBuf,
    },
    /// Count matches of many rules over many events: prints {rule: matches} as JSON.
    Match {
        /// A JSON object {rule name: pattern}.
        #[arg(long)]
        rules: PathBuf,
        /// Events, one JSON object per line; `.gz` files are decompressed.
        #[arg(long)]
        events: PathBuf,
    },
}

#[derive(Subcommand)]
enum FlowCommand {
    /// Run a flow over an event offline: prints the step trace and the messages it would send.
    Run(cmd_flow::RunArgs),
    /// Make a flow's draft (or --version N) the live version (发布集成流).
    Publish {
        /// The flow.
        name: String,
        /// A saved version instead of the draft.
        #[arg(long)]
        version: Option<i64>,
    },
    /// Show what a flow's draft changes against the live version (exit 1 when they differ).
    Diff {
        /// The flow.
        name: String,
        /// live, draft or a version number.
        #[arg(long, default_value = "live")]
        from: String,
        /// live, draft or a version number.
        #[arg(long, default_value = "draft")]
        to: String,
    },
    /// Make an earlier version of a flow live again.
    Rollback {
        /// The flow.
        name: String,
        /// The version to go back to.
        #[arg(long)]
        to: i64,
    },
    /// A flow's saved versions: live, draft, earlier.
    Versions {
        /// The flow.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ObjectsCommand {
    /// All of them: a table on a terminal, JSON otherwise.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One, by name: YAML on a terminal, JSON otherwise.
    Get {
        /// The name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete one (refused, naming who uses it, while something does).
    Delete {
        /// The name.
        name: String,
    },
}

impl ObjectsCommand {
    fn split(self) -> (cmd_objects::Verb, bool) {
        match self {
            ObjectsCommand::List { json } => (cmd_objects::Verb::List, json),
            ObjectsCommand::Get { name, json } => (cmd_objects::Verb::Get(name), json),
            ObjectsCommand::Delete { name } => (cmd_objects::Verb::Delete(name), false),
        }
    }
}

#[derive(Args)]
struct ApplyArgs {
    /// The configuration file (YAML or JSON).
    #[arg(short = 'f', long = "file")]
    file: PathBuf,
    /// Save the file's flows as drafts (publish them with `magpie flow publish`).
    #[arg(long)]
    draft: bool,
    /// Check the file and show what would be created, changed and left alone, as a diff; apply nothing.
    #[arg(long)]
    dry_run: bool,
}

/// An error with the exit code it should end the process with.
#[derive(Debug)]
pub struct Exit(pub u8, pub anyhow::Error);

impl<E: Into<anyhow::Error>> From<E> for Exit {
    fn from(e: E) -> Self {
        Exit(1, e.into())
    }
}

/// Exit code 2: the input (a file, an argument) is invalid.
pub fn invalid(e: impl Into<anyhow::Error>) -> Exit {
    Exit(2, e.into())
}

/// Output piped into a program that stops reading (`magpie events list | head`) ends the process
/// quietly, as for any Unix tool, instead of a panic in `println!`.
fn die_quietly_on_closed_pipes() {
    #[cfg(unix)]
    // SAFETY: restoring the default action of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The client options, as the help of every command that talks to a server lists them.
const CLIENT_OPTIONS: &str = "\
Server options:
      --server <URL>   The Magpie server [env: MAGPIE_SERVER] [default: http://127.0.0.1:7480]
      --token <TOKEN>  The API token, sent as a bearer token [env: MAGPIE_TOKEN]";

/// The commands that talk to a server (their help lists `--server` / `--token`; the offline
/// commands' help does not).
const ONLINE: &[&[&str]] = &[
    &["events", "put"],
    &["events", "send-template"],
    &["events", "trace"],
    &["events", "list"],
    &["events", "replay"],
    &["events", "storm"],
    &["flow", "publish"],
    &["flow", "diff"],
    &["flow", "rollback"],
    &["flow", "versions"],
    &["apply"],
    &["buses"],
    &["rules"],
    &["flows"],
    &["connections"],
    &["dead-letters"],
    &["alerts"],
    &["silence"],
    &["token", "list"],
    &["token", "revoke"],
    &["audit"],
];

/// Parses the command line, with the client options in the help of the commands that use them.
fn parse_cli() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    fn note(cmd: clap::Command, path: &'static [&'static str]) -> clap::Command {
        match path.split_first() {
            None => {
                let subs: Vec<String> = cmd.get_subcommands().map(|c| c.get_name().to_string()).collect();
                let cmd = cmd.after_help(CLIENT_OPTIONS);
                subs.into_iter().fold(cmd, |c, s| c.mut_subcommand(s, |sc| note(sc, &[])))
            }
            Some((first, rest)) => cmd.mut_subcommand(*first, move |c| note(c, rest)),
        }
    }
    let mut cmd = Cli::command().after_help(CLIENT_OPTIONS);
    for path in ONLINE {
        cmd = note(cmd, path);
    }
    cmd = cmd.mut_subcommand("serve", |c| {
        c.after_help("      --token <TOKEN>  An admin token the API and the console accept (named admin; more in auth.tokens) [env: MAGPIE_TOKEN]")
    });
    Cli::from_arg_matches(&cmd.get_matches()).unwrap_or_else(|e| e.exit())
}

fn main() -> ExitCode {
    // A sandbox process (this executable started again by a server) serves and exits here.
    magpie_sandbox::enter_if_child();
    // `serve` reads the global `--token` / `MAGPIE_TOKEN` as the token it requires.
    let cli = parse_cli();
    // Servers keep the default (a closed pipe is an error to handle, not a reason to stop).
    if !matches!(cli.command, Command::Serve(_) | Command::Robots(_)) {
        die_quietly_on_closed_pipes();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        let client = client::Client::new(&cli.server, cli.token.clone());
        match cli.command {
            Command::Serve(args) => cmd_serve::serve(args, cli.token).await,
            Command::Robots(args) => cmd_serve::robots(args).await,
            Command::Events(EventsCommand::Put { bus, file }) => cmd_events::put(&client?, &bus, &file).await,
            Command::Events(EventsCommand::Templates { json }) => cmd_events::templates(json),
            Command::Events(EventsCommand::SendTemplate { name, bus }) => {
                cmd_events::send_template(&client?, &name, &bus).await
            }
            Command::Events(EventsCommand::Trace { id, json }) => cmd_events::trace(&client?, &id, json).await,
            Command::Pattern(PatternCommand::Test { pattern, event }) => cmd_pattern::test(&pattern, &event),
            Command::Pattern(PatternCommand::Match { rules, events }) => cmd_pattern::match_file(&rules, &events),
            Command::Flow(FlowCommand::Run(args)) => cmd_flow::run(args).await,
            Command::Apply(args) => cmd_objects::apply(&client?, &args.file, args.draft, args.dry_run).await,
            Command::Buses(c) => {
                let (verb, json) = c.split();
                cmd_objects::run(&client?, cmd_objects::Kind::Buses, verb, "default", json).await
            }
            Command::Rules { verb, bus } => {
                let (verb, json) = verb.split();
                cmd_objects::run(&client?, cmd_objects::Kind::Rules, verb, &bus, json).await
            }
            Command::Flows(c) => {
                let (verb, json) = c.split();
                cmd_objects::run(&client?, cmd_objects::Kind::Flows, verb, "default", json).await
            }
            Command::Connections(c) => {
                let (verb, json) = c.split();
                cmd_objects::run(&client?, cmd_objects::Kind::Connections, verb, "default", json).await
            }
            Command::Flow(FlowCommand::Publish { name, version }) => {
                cmd_versions::publish(&client?, &name, version).await
            }
            Command::Flow(FlowCommand::Diff { name, from, to }) => {
                cmd_versions::diff(&client?, &name, &from, &to).await
            }
            Command::Flow(FlowCommand::Rollback { name, to }) => cmd_versions::rollback(&client?, &name, to).await,
            Command::Flow(FlowCommand::Versions { name, json }) => cmd_versions::versions(&client?, &name, json).await,
            Command::Events(EventsCommand::List { bus, since, event_type, subject, limit, json }) => {
                let a = cmd_archive::ListArgs { bus, since, event_type, subject, limit, json };
                cmd_archive::list(&client?, a).await
            }
            Command::Events(EventsCommand::Replay { bus, since, from, to, rule, dry_run }) => {
                cmd_archive::replay(&client?, cmd_archive::ReplayArgs { bus, since, from, to, rule, dry_run }).await
            }
            Command::Events(EventsCommand::Storm { count, template, bus, no_watch }) => {
                cmd_archive::storm(&client?, cmd_archive::StormArgs { count, template, bus, no_watch }).await
            }
            Command::DeadLetters(LettersCommand::List { filter, redriven, json }) => {
                cmd_letters::list(&client?, filter.into_filter(), redriven, json).await
            }
            Command::Alerts { state, bus, json } => cmd_alerts::list(&client?, &state, bus.as_deref(), json).await,
            Command::Silence(SilenceCommand::Add { pattern, duration, until, start, comment, bus, created_by }) => {
                let a = cmd_alerts::AddArgs { pattern: &pattern, duration, until, start, comment, bus, created_by };
                cmd_alerts::add(&client?, a).await
            }
            Command::Silence(SilenceCommand::List { all, json }) => {
                cmd_alerts::list_silences(&client?, all, json).await
            }
            Command::Silence(SilenceCommand::Expire { id }) => cmd_alerts::expire(&client?, &id).await,
            Command::Token(TokenCommand::Create { name, role, on_server }) => {
                let client = if on_server { Some(client?) } else { None };
                cmd_security::create(client.as_ref(), &name, &role).await
            }
            Command::Token(TokenCommand::List { json }) => cmd_security::list(&client?, json).await,
            Command::Token(TokenCommand::Revoke { name }) => cmd_security::revoke(&client?, &name).await,
            Command::Secrets(SecretsCommand::Rotate { data_dir }) => cmd_security::rotate(&data_dir).await,
            Command::Audit { who, target, limit, json } => {
                cmd_security::audit(&client?, who.as_deref(), target.as_deref(), limit, json).await
            }
            Command::DeadLetters(LettersCommand::Show { id, json }) => cmd_letters::show(&client?, id, json).await,
            Command::DeadLetters(LettersCommand::Redrive { ids, all, filter }) => {
                cmd_letters::redrive(&client?, ids, all, filter.into_filter()).await
            }
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(Exit(code, e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(code)
        }
    }
}
