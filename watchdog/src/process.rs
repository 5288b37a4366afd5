//! Child processes: spawning each function process into its own process group with a parent-death
//! signal, the subreaper, the one reaper that collects every exit status (and hands known children's
//! to their waiters), and group kills (spec §10). The only module with unsafe code.

use std::collections::{HashMap, HashSet};
use std::io;
use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
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
/// The reaper runs even when the subreaper flag is refused (qemu-user does not emulate it): the
/// watchdog's own children must still be collected; only adopted orphans are then missed.
pub fn start_reaper() -> io::Result<()> {
    let mut sigchld = signal(SignalKind::child())?;
    tokio::spawn(async move {
        loop {
            reap_all();
            if sigchld.recv().await.is_none() {
                break;
            }
        }
    });
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) only sets a flag on this process; no memory is passed.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
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

/// Whether this process runs as root (may create mount namespaces).
pub fn is_root() -> bool {
    // SAFETY: geteuid takes no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Sends `sig` to one process; a process that is already gone is ignored.
pub fn kill_pid(pid: i32, sig: i32) {
    if pid > 1 {
        // SAFETY: kill takes plain integers.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// What a child's standard stream is connected to.
pub enum Io {
    /// A new pipe; the watchdog keeps the other end.
    Pipe,
    /// `/dev/null`.
    Null,
    /// This descriptor (e.g. one pipe shared by stdout and stderr).
    Fd(OwnedFd),
}

/// A function process to start: the program is looked up in `PATH` when it has no `/`; the
/// child's environment is the watchdog's plus `env` (which wins).
pub struct Cmd {
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(OsString, OsString)>,
    pub stdin: Io,
    pub stdout: Io,
    pub stderr: Io,
    /// Working folder of the child; `None` keeps the watchdog's.
    pub cwd: Option<std::path::PathBuf>,
    /// Start from an empty environment instead of the watchdog's (the gateway builds each
    /// replica's environment itself).
    pub clear_env: bool,
    /// `(source, target)`: in a private mount namespace of its own, the child sees `source`
    /// read-only at `target` (the gateway's secrets at `/var/openfaas/secrets`; needs root).
    pub bind_ro: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

/// The watchdog's own environment as `KEY=value` strings, read once (it never changes).
static BASE_ENV: LazyLock<Vec<(OsString, CString)>> = LazyLock::new(|| {
    std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.clone().into_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok().map(|c| (k, c))
        })
        .collect()
});

fn cstring(s: impl Into<Vec<u8>>) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in argument or environment"))
}

/// The last `PATH` lookup: a watchdog runs one program, so one entry saves a walk per request.
static RESOLVED: Mutex<Option<(String, CString)>> = Mutex::new(None);

/// `program` as an executable path: as given when it has a `/`, else the first match in `PATH`.
fn resolve(program: &str) -> io::Result<CString> {
    if program.contains('/') {
        return cstring(program);
    }
    let mut cache = RESOLVED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, path)) = cache.as_ref().filter(|(p, _)| p == program) {
        return Ok(path.clone());
    }
    let path = lookup_path(program)?;
    *cache = Some((program.to_string(), path.clone()));
    Ok(path)
}

fn forget_resolved() {
    *RESOLVED.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

fn lookup_path(program: &str) -> io::Result<CString> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(program);
        if let Ok(meta) = std::fs::metadata(&candidate) {
            use std::os::unix::fs::PermissionsExt;
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return cstring(candidate.into_os_string().into_vec());
            }
        }
    }
    Err(io::Error::from_raw_os_error(libc::ENOENT))
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors into the array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The errno a child reported before exec, or 0 when it exec'd.
fn read_report(fd: &OwnedFd) -> libc::c_int {
    let mut buf = [0u8; 4];
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: reads into the unfilled tail of a live local buffer.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf[got..].as_mut_ptr() as *mut libc::c_void, buf.len() - got) };
        if n > 0 {
            got += n as usize;
        } else if n == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            break;
        }
    }
    if got == buf.len() { libc::c_int::from_ne_bytes(buf) } else { 0 }
}

/// Signals with a handler in the watchdog, plus SIGPIPE: what a child resets to the default.
/// Read once, at the first spawn: every handler is installed at start-up, before any spawn,
/// so the child makes a few calls instead of one per signal.
static CAUGHT_SIGNALS: LazyLock<Vec<libc::c_int>> = LazyLock::new(|| {
    let mut caught = vec![libc::SIGPIPE];
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP || sig == libc::SIGPIPE {
            continue;
        }
        // SAFETY: sigaction with a null new action only reads the current one into `old`.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) };
        if rc == 0 && old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN {
            caught.push(sig);
        }
    }
    caught
});

/// Everything the child needs, prepared before it exists: it may not allocate.
struct ChildArgs {
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    fds: [libc::c_int; 3],
    parent: libc::pid_t,
    reset_signals: &'static [libc::c_int],
    /// Folder to change to, or null.
    cwd: *const libc::c_char,
    /// Read-only bind mount in a new mount namespace: source and target, or nulls.
    bind_src: *const libc::c_char,
    bind_dst: *const libc::c_char,
    /// Write end of a close-on-exec pipe: the child writes the errno of a failed step to it.
    /// A pipe rather than the shared memory of CLONE_VM, because qemu-user runs this clone as a
    /// plain fork (no shared memory); the pipe reports the same on both.
    report: libc::c_int,
}

/// Runs in the child, in the watchdog's memory (CLONE_VM) while the parent thread waits
/// (CLONE_VFORK): only async-signal-safe calls on prepared data, then exec or _exit.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` points at the parent's ChildArgs, alive until this child execs or exits,
    // and the parent thread is suspended meanwhile, so nothing else touches it.
    unsafe {
        let a = &mut *(arg as *mut ChildArgs);
        let fail = |a: &mut ChildArgs| -> ! {
            let mut err = *libc::__errno_location();
            if err == 0 {
                err = libc::EINVAL;
            }
            let bytes = err.to_ne_bytes();
            libc::write(a.report, bytes.as_ptr() as *const libc::c_void, bytes.len());
            libc::_exit(127)
        };
        // Signal handlers of the watchdog must not run here: every caught signal, and SIGPIPE
        // (ignored by the Rust runtime), goes back to the default.
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        for &sig in a.reset_signals {
            libc::sigaction(sig, &dfl, std::ptr::null_mut());
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        if libc::setpgid(0, 0) != 0 {
            fail(a);
        }
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
            fail(a);
        }
        // The watchdog may have died before prctl: then no signal would ever come.
        if libc::getppid() != a.parent {
            libc::_exit(127);
        }
        if !a.bind_src.is_null() {
            // A mount namespace of the child's own: the bind is invisible to the host and to
            // other replicas, and disappears with the child's last process.
            let root = c"/".as_ptr();
            let none = std::ptr::null::<libc::c_char>();
            if libc::unshare(libc::CLONE_NEWNS) != 0
                || libc::mount(none, root, none, libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) != 0
                || libc::mount(a.bind_src, a.bind_dst, none, libc::MS_BIND | libc::MS_REC, std::ptr::null()) != 0
                || libc::mount(none, a.bind_dst, none, libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY, std::ptr::null()) != 0
            {
                fail(a);
            }
        }
        if !a.cwd.is_null() && libc::chdir(a.cwd) != 0 {
            fail(a);
        }
        for (target, &fd) in a.fds.iter().enumerate() {
            let target = target as libc::c_int;
            if fd == target {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            } else if libc::dup2(fd, target) < 0 {
                fail(a);
            }
        }
        libc::execve(a.path, a.argv, a.envp);
        fail(a)
    }
}

/// Starts `cmd` in a process group of its own with `PR_SET_PDEATHSIG(SIGKILL)`, the way
/// posix_spawn does (clone with CLONE_VM|CLONE_VFORK: no page-table copy, no copy-on-write
/// faults afterwards), which a per-request fork cannot afford.
///
/// The parent-death signal fires when the spawning *thread* exits, so call this from the
/// runtime's thread (it lives as long as the watchdog), never from `spawn_blocking`.
pub fn spawn(cmd: Cmd) -> io::Result<Spawned> {
    let path = resolve(&cmd.program)?;
    let mut argv_c = vec![cstring(cmd.program.as_bytes())?];
    for a in &cmd.args {
        argv_c.push(cstring(a.as_bytes())?);
    }
    let mut env_c: Vec<CString> = Vec::with_capacity(BASE_ENV.len() + cmd.env.len());
    for (k, kv) in BASE_ENV.iter().filter(|_| !cmd.clear_env) {
        if !cmd.env.iter().any(|(ek, _)| ek == k) {
            env_c.push(kv.clone());
        }
    }
    for (k, v) in &cmd.env {
        let mut kv = k.as_bytes().to_vec();
        kv.push(b'=');
        kv.extend_from_slice(v.as_bytes());
        env_c.push(cstring(kv)?);
    }
    let cwd = cmd.cwd.map(|d| cstring(d.into_os_string().into_vec())).transpose()?;
    let bind = match cmd.bind_ro {
        Some((src, dst)) => Some((cstring(src.into_os_string().into_vec())?, cstring(dst.into_os_string().into_vec())?)),
        None => None,
    };
    let argv: Vec<*const libc::c_char> = argv_c.iter().map(|c| c.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
    let envp: Vec<*const libc::c_char> = env_c.iter().map(|c| c.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();

    // The child's ends (kept open here until it has exec'd) and our ends.
    let mut child_fds: Vec<OwnedFd> = Vec::with_capacity(3);
    let mut ours: [Option<OwnedFd>; 3] = [None, None, None];
    for (i, io) in [cmd.stdin, cmd.stdout, cmd.stderr].into_iter().enumerate() {
        let fd = match io {
            Io::Pipe => {
                let (r, w) = pipe()?;
                let (child, mine) = if i == 0 { (r, w) } else { (w, r) };
                ours[i] = Some(mine);
                child
            }
            Io::Null => std::fs::OpenOptions::new().read(i == 0).write(i != 0).open("/dev/null")?.into(),
            Io::Fd(fd) => fd,
        };
        child_fds.push(fd);
    }
    // Kept above the standard descriptors, which the child overwrites with dup2.
    let (report_r, report_w) = pipe()?;
    let report_w = if report_w.as_raw_fd() < 3 {
        // try_clone duplicates to 3 or above; the original must not stay open (no EOF then).
        let above = report_w.try_clone()?;
        drop(report_w);
        above
    } else {
        report_w
    };
    let mut args = ChildArgs {
        path: path.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        fds: [child_fds[0].as_raw_fd(), child_fds[1].as_raw_fd(), child_fds[2].as_raw_fd()],
        parent: std::process::id() as libc::pid_t,
        reset_signals: &CAUGHT_SIGNALS,
        cwd: cwd.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
        bind_src: bind.as_ref().map_or(std::ptr::null(), |(s, _)| s.as_ptr()),
        bind_dst: bind.as_ref().map_or(std::ptr::null(), |(_, d)| d.as_ptr()),
        report: report_w.as_raw_fd(),
    };
    // The child's stack: never read before the child writes it, so it need not be zeroed.
    let mut stack: Vec<u8> = Vec::with_capacity(64 * 1024);

    let (tx, rx) = oneshot::channel();
    let pid = {
        // Held so the reaper cannot collect this pid before its waiter is registered.
        let mut waiters = WAITERS.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: all signals are blocked on this thread around clone, so no handler runs in the
        // child before it resets them; the stack is ours and outlives the child's use of it
        // (CLONE_VFORK returns only after exec or exit); child_main only reads `args`.
        let pid = unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
            let top = stack.as_mut_ptr().add(stack.capacity() - 64);
            let top = (top as usize & !15) as *mut libc::c_void;
            let pid = libc::clone(
                child_main,
                top,
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                &mut args as *mut ChildArgs as *mut libc::c_void,
            );
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            pid
        };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        // Our write end closed, the read ends at the child's exec (close-on-exec) or brings the
        // errno of the step that failed.
        drop(report_w);
        let err = read_report(&report_r);
        if err != 0 {
            // The child exited before exec; the reaper collects it. A program that vanished
            // from its PATH entry is looked up again next time.
            forget_resolved();
            return Err(io::Error::from_raw_os_error(err));
        }
        waiters.insert(pid, tx);
        pid
    };
    drop(child_fds);
    GROUPS.lock().unwrap_or_else(|e| e.into_inner()).insert(pid);
    let [stdin, stdout, stderr] = ours;
    Ok(Spawned {
        group: Group { pid },
        stdin: stdin.map(pipe::Sender::from_owned_fd).transpose()?,
        stdout: stdout.map(pipe::Receiver::from_owned_fd).transpose()?,
        stderr: stderr.map(pipe::Receiver::from_owned_fd).transpose()?,
        exit: rx,
    })
}

/// A pipe whose write end a child can share for stdout and stderr, and its tokio read end.
pub fn shared_pipe() -> io::Result<(pipe::Receiver, OwnedFd, OwnedFd)> {
    let (r, w) = pipe()?;
    let w2 = w.try_clone()?;
    Ok((pipe::Receiver::from_owned_fd(r)?, w, w2))
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
