//! Child processes: spawning each function process into its own process group with a parent-death
//! signal, the subreaper, the one reaper that collects every exit status (and hands known children's
//! to their waiters), and group kills (spec §10). The only module with unsafe code.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::unix::process::CommandExt;
use std::os::fd::OwnedFd;
use std::process::{ChildStdin, Command};
use std::sync::{LazyLock, Mutex};

use tokio::net::unix::pipe;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;

/// How a child ended, with its peak resident memory.
#[derive(Debug, Clone, Copy)]
pub struct Exit {
    /// Raw wait status.
    status: i32,
    pub max_rss_bytes: Option<u64>,
}

impl Exit {
    /// Stand-in for a child killed by SIGKILL whose status was not collected.
    pub const fn killed() -> Exit {
        Exit { status: libc::SIGKILL, max_rss_bytes: None }
    }

    pub fn success(&self) -> bool {
        libc::WIFEXITED(self.status) && libc::WEXITSTATUS(self.status) == 0
    }

    pub fn code(&self) -> Option<i32> {
        libc::WIFEXITED(self.status).then(|| libc::WEXITSTATUS(self.status))
    }

    /// Go's wording: `exit status 3`, `signal: killed`.
    pub fn describe(&self) -> String {
        if libc::WIFEXITED(self.status) {
            format!("exit status {}", libc::WEXITSTATUS(self.status))
        } else if libc::WIFSIGNALED(self.status) {
            format!("signal: {}", signal_name(libc::WTERMSIG(self.status)))
        } else {
            format!("wait status {}", self.status)
        }
    }
}

fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "hangup",
        libc::SIGINT => "interrupt",
        libc::SIGQUIT => "quit",
        libc::SIGILL => "illegal instruction",
        libc::SIGTRAP => "trace/breakpoint trap",
        libc::SIGABRT => "aborted",
        libc::SIGBUS => "bus error",
        libc::SIGFPE => "floating point exception",
        libc::SIGKILL => "killed",
        libc::SIGUSR1 => "user defined signal 1",
        libc::SIGSEGV => "segmentation fault",
        libc::SIGUSR2 => "user defined signal 2",
        libc::SIGPIPE => "broken pipe",
        libc::SIGALRM => "alarm clock",
        libc::SIGTERM => "terminated",
        _ => return format!("signal {sig}"),
    };
    name.to_string()
}

/// Children whose exit someone waits for, keyed by pid.
static WAITERS: LazyLock<Mutex<HashMap<i32, oneshot::Sender<Exit>>>> = LazyLock::new(Default::default);
/// Process groups of function processes still in use, signalled at shutdown.
static GROUPS: LazyLock<Mutex<HashSet<i32>>> = LazyLock::new(Default::default);

/// Marks the watchdog a child subreaper and starts the reaper. Call once, inside the runtime,
/// before the first spawn (so no SIGCHLD is missed).
pub fn start_reaper() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) only sets a flag on this process; no memory is passed.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut sigchld = signal(SignalKind::child())?;
    tokio::spawn(async move {
        loop {
            reap_all();
            if sigchld.recv().await.is_none() {
                break;
            }
        }
    });
    Ok(())
}

/// Collects every exited child: known ones go to their waiter, the rest (adopted orphans) are
/// discarded, so no zombie stays.
fn reap_all() {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: zeroed rusage is a valid value for this plain C struct.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 writes only into the two out-pointers, which point at live locals.
        let pid = unsafe { libc::wait4(-1, &mut status, libc::WNOHANG, &mut usage) };
        if pid <= 0 {
            return;
        }
        let exit = Exit { status, max_rss_bytes: u64::try_from(usage.ru_maxrss).ok().map(|kb| kb * 1024) };
        let waiter = WAITERS.lock().unwrap_or_else(|e| e.into_inner()).remove(&pid);
        if let Some(tx) = waiter {
            let _ = tx.send(exit);
        }
    }
}

/// A started function process: its pipes (those asked for) and its exit.
pub struct Spawned {
    pub group: Group,
    pub stdin: Option<pipe::Sender>,
    pub stdout: Option<pipe::Receiver>,
    pub stderr: Option<pipe::Receiver>,
    pub exit: oneshot::Receiver<Exit>,
}

/// The process group of one function process (its pid is the group id). Dropping it only stops
/// tracking the group for shutdown; kill explicitly.
pub struct Group {
    pub pid: i32,
}

impl Group {
    /// Signals the whole group; ignores a group that is already gone.
    pub fn signal(&self, sig: i32) {
        kill_group(self.pid, sig);
    }
    pub fn kill(&self) {
        self.signal(libc::SIGKILL);
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        GROUPS.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.pid);
    }
}

fn kill_group(pgid: i32, sig: i32) {
    if pgid > 1 {
        // SAFETY: kill takes plain integers; a negative pid addresses the process group.
        unsafe {
            libc::kill(-pgid, sig);
        }
    }
}

fn kill_pid(pid: i32, sig: i32) {
    if pid > 1 {
        // SAFETY: kill takes plain integers.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Spawns `cmd` in a process group of its own with `PR_SET_PDEATHSIG(SIGKILL)`.
///
/// The parent-death signal fires when the spawning *thread* exits, so call this from a runtime
/// worker thread (they live as long as the watchdog), never from `spawn_blocking`.
pub fn spawn(mut cmd: Command) -> io::Result<Spawned> {
    let parent = std::process::id() as libc::pid_t;
    cmd.process_group(0);
    // SAFETY: the closure runs in the forked child before exec and calls only async-signal-safe
    // syscalls (prctl, getppid); it allocates nothing and touches no lock.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The watchdog may have died between fork and prctl: then no signal would come.
            if libc::getppid() != parent {
                return Err(io::Error::other("watchdog exited"));
            }
            Ok(())
        });
    }
    let (tx, rx) = oneshot::channel();
    // Hold the waiter table while spawning so the reaper cannot collect this pid before its
    // waiter is registered.
    let mut child = {
        let mut waiters = WAITERS.lock().unwrap_or_else(|e| e.into_inner());
        let child = cmd.spawn()?;
        waiters.insert(child.id() as i32, tx);
        child
    };
    drop(cmd); // closes the parent's copies of any pipe ends handed to the child
    let pid = child.id() as i32;
    GROUPS.lock().unwrap_or_else(|e| e.into_inner()).insert(pid);
    let group = Group { pid };
    let stdin = child.stdin.take().map(sender).transpose()?;
    let stdout = child.stdout.take().map(receiver).transpose()?;
    let stderr = child.stderr.take().map(receiver).transpose()?;
    Ok(Spawned { group, stdin, stdout, stderr, exit: rx })
}

fn sender(p: ChildStdin) -> io::Result<pipe::Sender> {
    pipe::Sender::from_owned_fd(p.into())
}

/// Makes a non-blocking tokio reader of a pipe's read end (child stdout/stderr, or our own pipe).
pub fn receiver(p: impl Into<OwnedFd>) -> io::Result<pipe::Receiver> {
    pipe::Receiver::from_owned_fd(p.into())
}

/// Direct children of the watchdog (including adopted orphans), read from /proc.
pub fn direct_children() -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return out };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // Fields after the command name, which is in parentheses and may hold spaces.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let ppid = fields.next().and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(me) && state != Some("Z") {
            out.push(pid);
        }
    }
    out
}

/// Signals every live function process group and every direct child; returns how many
/// processes remain to wait for.
pub fn signal_all(sig: i32) -> usize {
    let groups: Vec<i32> = GROUPS.lock().unwrap_or_else(|e| e.into_inner()).iter().copied().collect();
    for g in groups {
        kill_group(g, sig);
    }
    let children = direct_children();
    for &pid in &children {
        kill_group(pid, sig);
        kill_pid(pid, sig);
    }
    children.len()
}
