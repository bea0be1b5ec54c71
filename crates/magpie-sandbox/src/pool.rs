//! Sandbox processes, spawned on demand and reused; one evaluation at a time each.

use std::collections::HashSet;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use magpie_flow::{Message, Program};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Semaphore;

use crate::SandboxOptions;
use crate::protocol::{Answer, MAX_FRAME, request};

/// How much of a process's standard error is kept, to say why it died.
const STDERR_TAIL: usize = 2_048;

pub(crate) struct Pool {
    opts: SandboxOptions,
    slots: Semaphore,
    idle: Mutex<Vec<Worker>>,
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// Programs this process holds.
    loaded: HashSet<u64>,
    stderr: Arc<Mutex<Vec<u8>>>,
    /// Reads `stderr` until the process closes it.
    stderr_reader: tokio::task::JoinHandle<()>,
}

/// Why an evaluation got no answer from its process.
enum Lost {
    /// The pipe broke: the process died.
    Died,
    /// It outlived the time limit.
    Timeout,
    /// It answered something that is not an answer.
    Garbled(String),
}

impl Pool {
    pub(crate) fn new(opts: SandboxOptions) -> Pool {
        let n = opts.processes.max(1);
        Pool { opts, slots: Semaphore::new(n), idle: Mutex::new(Vec::new()) }
    }

    pub(crate) fn describe(&self) -> String {
        format!(
            "{} sandbox processes, {} MiB and {:?} per evaluation",
            self.opts.processes.max(1),
            self.opts.memory_bytes >> 20,
            self.opts.time_limit
        )
    }

    pub(crate) async fn eval(&self, program: &Program, msg: &Message) -> Result<Value, String> {
        let body = serde_json::to_vec(&msg.view()).map_err(|e| format!("the message cannot be encoded: {e}"))?;
        crate::check_message_size(body.len())?;
        let Ok(_slot) = self.slots.acquire().await else { return Err("the sandbox is shut down".into()) };
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut worker = match idle {
            Some(w) => w,
            None => self.spawn().map_err(|e| format!("a sandbox process cannot be started: {e}"))?,
        };
        let outcome = tokio::time::timeout(self.opts.time_limit, worker.call(program, &body)).await;
        let lost = match outcome {
            Ok(Ok(answer)) => {
                self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(worker);
                return answer;
            }
            Ok(Err(lost)) => lost,
            Err(_) => Lost::Timeout,
        };
        // The process is not trusted again: stop it (if it still runs) and say why it ended.
        let _ = worker.child.start_kill();
        let status = worker.child.wait().await.ok();
        // What it wrote as it died is read once the pipe closes.
        let _ = tokio::time::timeout(std::time::Duration::from_millis(500), &mut worker.stderr_reader).await;
        let reason = self.explain(&lost, status, &worker.stderr);
        tracing::warn!(target: "magpie::sandbox", program = program.id(), reason = %reason, "a sandbox process was replaced");
        Err(reason)
    }

    fn explain(&self, lost: &Lost, status: Option<ExitStatus>, stderr: &Mutex<Vec<u8>>) -> String {
        let tail = String::from_utf8_lossy(&stderr.lock().unwrap_or_else(|p| p.into_inner())).trim().to_string();
        // The line that says why, not the notes the runtime adds after it.
        let line = |needle: &str| tail.lines().find(|l| l.contains(needle)).map(|l| l.trim().to_string());
        let last = tail.lines().rev().find(|l| !l.trim_start().starts_with("note:")).unwrap_or("").trim().to_string();
        let memory = self.opts.memory_bytes >> 20;
        match lost {
            Lost::Timeout => format!(
                "it ran longer than the {} s time limit and was stopped",
                magpie_flow::budget::TIME_LIMIT.as_secs()
            ),
            Lost::Garbled(why) => format!("the sandbox answered nonsense ({why}) and was replaced"),
            Lost::Died if line("memory allocation").is_some() => format!(
                "it needed more memory than the {memory} MiB an evaluation may use ({})",
                line("memory allocation").unwrap_or_default()
            ),
            Lost::Died if line("overflowed its stack").is_some() => format!(
                "it nested or recursed too deep for the {} MiB stack an evaluation has (stack overflow)",
                magpie_flow::budget::STACK_BYTES >> 20
            ),
            Lost::Died if status.is_some_and(|s| s.signal() == Some(libc::SIGABRT)) => format!(
                "it died (SIGABRT): it needed more memory than the {memory} MiB an evaluation may use, or more stack{}",
                if last.is_empty() { String::new() } else { format!(" ({last})") }
            ),
            Lost::Died => {
                let how = status.map_or("it died".to_string(), |s| format!("it died ({s})"));
                if last.is_empty() {
                    format!("{how}; the sandbox process was replaced")
                } else {
                    format!("{how}: {last}")
                }
            }
        }
    }

    fn spawn(&self) -> std::io::Result<Worker> {
        let mut cmd = Command::new(&self.opts.program);
        cmd.args(&self.opts.args)
            // A sandbox sees no secrets: nothing of the server's environment but what it needs.
            .env_clear()
            .env(crate::CHILD_ENV, "1")
            .env(crate::MEMORY_ENV, self.opts.memory_bytes.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn()?;
        let (Some(stdin), Some(stdout), Some(mut err)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(std::io::Error::other("the sandbox's pipes are missing"));
        };
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let tail = stderr.clone();
        let stderr_reader = tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            while let Ok(n) = err.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                t.extend_from_slice(&buf[..n]);
                if t.len() > STDERR_TAIL {
                    let cut = t.len() - STDERR_TAIL;
                    t.drain(..cut);
                }
            }
        });
        Ok(Worker { child, stdin, stdout: BufReader::new(stdout), loaded: HashSet::new(), stderr, stderr_reader })
    }
}

impl Worker {
    /// One evaluation: the answer, or why there is none.
    async fn call(&mut self, program: &Program, msg: &[u8]) -> Result<Result<Value, String>, Lost> {
        let first = !self.loaded.contains(&program.id());
        let mut answer = self.exchange(&request(program.id(), first.then(|| program.source()), msg)).await?;
        if matches!(answer, Answer::Unknown(_)) {
            // The process forgot it (its cache was full): send it again, whole.
            answer = self.exchange(&request(program.id(), Some(program.source()), msg)).await?;
        }
        match answer {
            Answer::Ok(v) => {
                self.loaded.insert(program.id());
                Ok(Ok(v))
            }
            Answer::Err(e) => {
                self.loaded.insert(program.id());
                Ok(Err(e))
            }
            Answer::Unknown(_) => Err(Lost::Garbled("it does not keep the program it was sent".into())),
        }
    }

    async fn exchange(&mut self, body: &[u8]) -> Result<Answer, Lost> {
        let len = u32::try_from(body.len()).map_err(|_| Lost::Garbled("the request is too large".into()))?;
        let mut frame = Vec::with_capacity(body.len() + 4);
        frame.extend_from_slice(&len.to_le_bytes());
        frame.extend_from_slice(body);
        self.stdin.write_all(&frame).await.map_err(|_| Lost::Died)?;
        self.stdin.flush().await.map_err(|_| Lost::Died)?;
        let mut len = [0u8; 4];
        self.stdout.read_exact(&mut len).await.map_err(|_| Lost::Died)?;
        let len = u32::from_le_bytes(len) as usize;
        if len > MAX_FRAME {
            return Err(Lost::Garbled(format!("an answer of {len} bytes")));
        }
        let mut buf = vec![0; len];
        self.stdout.read_exact(&mut buf).await.map_err(|_| Lost::Died)?;
        match serde_json::from_slice(&buf) {
            Ok(answer) => Ok(answer),
            // The whole frame was read, so the process is still in step: only the value is refused.
            Err(e) if e.to_string().contains("recursion limit") => {
                Ok(Answer::Err("the result nests deeper than the 128 levels a value may have".into()))
            }
            Err(e) => Err(Lost::Garbled(e.to_string())),
        }
    }
}
