//! A sandbox process: bounds itself, then answers requests until its input closes.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::os::fd::FromRawFd;

use magpie_flow::Compiled;

use crate::protocol::{Answer, Request, read_frame, write_frame};

/// Programs a process keeps compiled; past this it starts afresh.
const CACHE: usize = 4_096;

/// Serves requests on standard input and output, then exits. Never returns.
pub(crate) fn serve() -> ! {
    let memory = std::env::var(crate::MEMORY_ENV).ok().and_then(|v| v.parse::<u64>().ok());
    let answers = match bound_self(memory) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("magpie sandbox: cannot set itself up: {e}");
            std::process::exit(70);
        }
    };
    // Code and values may nest deeply: evaluate on a thread with a big stack.
    let worker = std::thread::Builder::new()
        .name("magpie-sandbox".into())
        .stack_size(magpie_flow::budget::STACK_BYTES)
        .spawn(move || answer_requests(answers));
    match worker {
        Ok(w) => {
            let _ = w.join();
            std::process::exit(0)
        }
        Err(e) => {
            eprintln!("magpie sandbox: no thread to evaluate on: {e}");
            std::process::exit(70)
        }
    }
}

fn answer_requests(answers: File) {
    let mut input = BufReader::new(std::io::stdin().lock());
    let mut output = BufWriter::new(answers);
    let mut cache: HashMap<u64, Compiled> = HashMap::new();
    loop {
        // The server closed the pipe (it stopped, or let this process go): done.
        let Ok(frame) = read_frame(&mut input) else { std::process::exit(0) };
        let answer = answer(&frame, &mut cache);
        let body =
            serde_json::to_vec(&answer).unwrap_or_else(|_| b"{\"err\":\"the answer cannot be encoded\"}".to_vec());
        if write_frame(&mut output, &body).is_err() {
            std::process::exit(0);
        }
    }
}

fn answer(frame: &[u8], cache: &mut HashMap<u64, Compiled>) -> Answer {
    let req: Request = match serde_json::from_slice(frame) {
        Ok(r) => r,
        Err(e) => return Answer::Err(format!("the sandbox received a bad request: {e}")),
    };
    if !cache.contains_key(&req.id) {
        let Some(source) = req.source else { return Answer::Unknown(true) };
        let compiled = match Compiled::build(&source) {
            Ok(c) => c,
            Err(e) => return Answer::Err(e),
        };
        if cache.len() >= CACHE {
            cache.clear();
        }
        cache.insert(req.id, compiled);
    }
    match cache.get(&req.id) {
        Some(c) => match c.eval(&req.msg) {
            Ok(v) => Answer::Ok(v),
            Err(e) => Answer::Err(e),
        },
        None => Answer::Unknown(true),
    }
}

/// Limits this process's memory, makes it die with its parent, and moves the answers off
/// standard output (anything else that writes there goes to standard error instead). Returns the
/// file answers are written to.
fn bound_self(memory: Option<u64>) -> std::io::Result<File> {
    // SAFETY: plain system calls on this process's own limits and descriptors.
    unsafe {
        if let Some(bytes) = memory {
            let limit = libc::rlimit { rlim_cur: bytes as libc::rlim_t, rlim_max: bytes as libc::rlim_t };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        let no_core = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        #[cfg(target_os = "linux")]
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        let answers = libc::dup(1);
        if answers < 0 || libc::dup2(2, 1) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(File::from_raw_fd(answers))
    }
}
