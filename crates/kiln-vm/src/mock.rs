//! The `mock` backend, for unit tests of the runner's logic only: nothing
//! runs. Commands are answered by a handler closure, files live in memory,
//! and every exec is recorded with the machine that received it. Allocation
//! can be slowed down or made to fail.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Cursor, Read};
use std::path::Component;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc::UnboundedSender;

use crate::path::normalize;
use crate::{
    Allocated, ExecRequest, ExecResult, GuestLayout, OutputChunk, OutputStream, Vm, VmError, VmId,
    VmProvider, VmSpec,
};

const BACKEND: &str = "mock";

/// What a mocked command prints and how it ends. Output is sent at once,
/// then the command "runs" for `delay` (so timeouts and cancellation can be
/// exercised), then exits with `exit_code`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MockResponse {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
    pub delay: Duration,
}

impl MockResponse {
    /// Exit 0, no output.
    pub fn ok() -> MockResponse {
        MockResponse::default()
    }

    pub fn exit(code: i32) -> MockResponse {
        MockResponse {
            exit_code: code,
            ..MockResponse::default()
        }
    }

    pub fn stdout(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdout = data.into();
        self
    }

    pub fn stderr(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stderr = data.into();
        self
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// One exec as the mock received it.
#[derive(Debug, Clone)]
pub struct MockExec {
    pub vm: VmId,
    pub request: ExecRequest,
}

type Handler = dyn Fn(&ExecRequest) -> MockResponse + Send + Sync;

/// An in-memory machine's files. Kept after release so tests can inspect
/// what the runner wrote.
#[derive(Debug, Clone, Default)]
struct MockFs {
    files: BTreeMap<String, (Vec<u8>, u32)>,
    dirs: BTreeSet<String>,
}

#[derive(Default)]
struct Shared {
    execs: Vec<MockExec>,
    fail_next: usize,
    live: BTreeSet<VmId>,
    /// Machines whose health checks fail (and which report not alive).
    sick: BTreeSet<VmId>,
    fs: BTreeMap<VmId, MockFs>,
}

/// A provider of fake machines; see the module docs. Cheap to clone: clones
/// share their records.
#[derive(Clone)]
pub struct MockProvider {
    handler: Arc<Handler>,
    shared: Arc<Mutex<Shared>>,
    allocation_delay: Duration,
}

impl Default for MockProvider {
    /// Every command succeeds silently.
    fn default() -> Self {
        MockProvider::new(|_| MockResponse::ok())
    }
}

impl MockProvider {
    pub fn new(handler: impl Fn(&ExecRequest) -> MockResponse + Send + Sync + 'static) -> Self {
        MockProvider {
            handler: Arc::new(handler),
            shared: Arc::default(),
            allocation_delay: Duration::ZERO,
        }
    }

    /// Every allocation takes this long (to exercise queues and limits).
    pub fn with_allocation_delay(mut self, delay: Duration) -> Self {
        self.allocation_delay = delay;
        self
    }

    /// The next `count` allocations fail with [`VmError::Allocation`].
    pub fn fail_allocations(&self, count: usize) {
        self.lock().fail_next = count;
    }

    /// Every exec so far, in order.
    pub fn execs(&self) -> Vec<MockExec> {
        self.lock().execs.clone()
    }

    /// Machines allocated and not yet released or dropped.
    pub fn live(&self) -> BTreeSet<VmId> {
        self.lock().live.clone()
    }

    /// Makes `vm` fail its health checks and report itself dead, as a
    /// crashed machine would.
    pub fn make_sick(&self, vm: &VmId) {
        self.lock().sick.insert(vm.clone());
    }

    /// Files of a machine (also after release), path to contents.
    pub fn files(&self, vm: &VmId) -> Option<BTreeMap<String, Vec<u8>>> {
        let shared = self.lock();
        let fs = shared.fs.get(vm)?;
        Some(
            fs.files
                .iter()
                .map(|(path, (data, _))| (path.clone(), data.clone()))
                .collect(),
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl VmProvider for MockProvider {
    fn name(&self) -> &'static str {
        BACKEND
    }

    async fn allocate(&self, _spec: &VmSpec) -> Result<Allocated, VmError> {
        let start = tokio::time::Instant::now();
        tokio::time::sleep(self.allocation_delay).await;
        let id = VmId::generate(BACKEND);
        let layout = GuestLayout::standard();
        {
            let mut shared = self.lock();
            if shared.fail_next > 0 {
                shared.fail_next -= 1;
                return Err(VmError::Allocation {
                    reason: "injected failure (mock)".to_owned(),
                    source: None,
                });
            }
            let mut fs = MockFs::default();
            for dir in layout.dirs() {
                fs.mkdir_all(dir);
            }
            shared.fs.insert(id.clone(), fs);
            shared.live.insert(id.clone());
        }
        let vm = MockVm {
            id,
            layout,
            provider: self.clone(),
        };
        Ok(Allocated {
            vm: Box::new(vm),
            elapsed: start.elapsed(),
        })
    }
}

/// A fake machine. Release and drop both just mark it dead.
struct MockVm {
    id: VmId,
    layout: GuestLayout,
    provider: MockProvider,
}

impl MockVm {
    fn with_fs<T>(&self, f: impl FnOnce(&mut MockFs) -> Result<T, VmError>) -> Result<T, VmError> {
        let mut shared = self.provider.lock();
        if !shared.live.contains(&self.id) {
            return Err(VmError::Released(self.id.to_string()));
        }
        let fs = shared.fs.entry(self.id.clone()).or_default();
        f(fs)
    }
}

#[async_trait]
impl Vm for MockVm {
    fn id(&self) -> &VmId {
        &self.id
    }

    fn layout(&self) -> &GuestLayout {
        &self.layout
    }

    async fn exec(
        &self,
        req: ExecRequest,
        output: UnboundedSender<OutputChunk>,
    ) -> Result<ExecResult, VmError> {
        let start = tokio::time::Instant::now();
        self.provider.lock().execs.push(MockExec {
            vm: self.id.clone(),
            request: req.clone(),
        });
        if req.argv.is_empty() {
            return Err(VmError::InvalidRequest("empty argv".to_owned()));
        }
        let mut result = ExecResult {
            exit_code: None,
            signal: None,
            timed_out: false,
            cancelled: req.cancel.is_cancelled(),
            duration: Duration::ZERO,
        };
        if result.cancelled {
            return Ok(result);
        }
        let response = (self.provider.handler)(&req);
        for (stream, data) in [
            (OutputStream::Stdout, response.stdout),
            (OutputStream::Stderr, response.stderr),
        ] {
            if !data.is_empty() {
                let _ = output.send(OutputChunk { stream, data });
            }
        }
        let timeout = async {
            match req.timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = tokio::time::sleep(response.delay) => result.exit_code = Some(response.exit_code),
            () = timeout => result.timed_out = true,
            () = req.cancel.cancelled() => result.cancelled = true,
        }
        result.duration = start.elapsed();
        Ok(result)
    }

    async fn put_file(
        &self,
        guest_path: &str,
        contents: Vec<u8>,
        mode: u32,
    ) -> Result<(), VmError> {
        let path = normalize(guest_path)?;
        self.with_fs(|fs| fs.write(path, contents, mode))
    }

    async fn get_file(&self, guest_path: &str) -> Result<Vec<u8>, VmError> {
        let path = normalize(guest_path)?;
        self.with_fs(|fs| match fs.files.get(&path) {
            Some((data, _)) => Ok(data.clone()),
            None => Err(VmError::NotFound { path }),
        })
    }

    async fn put_archive(&self, guest_dir: &str, tar: Vec<u8>) -> Result<(), VmError> {
        let dir = normalize(guest_dir)?;
        // Parse everything first so a bad archive changes nothing.
        let entries = read_tar(&tar).map_err(|e| VmError::io("unpack archive into", &dir, e))?;
        self.with_fs(|fs| {
            fs.mkdir_all(&dir);
            for entry in entries {
                let path = join(&dir, &entry.rel);
                match entry.data {
                    None => fs.mkdir_all(&path),
                    Some(data) => fs.write(path, data, entry.mode)?,
                }
            }
            Ok(())
        })
    }

    async fn get_archive(&self, guest_dir: &str) -> Result<Vec<u8>, VmError> {
        let dir = normalize(guest_dir)?;
        let (dirs, files) = self.with_fs(|fs| {
            if !fs.dirs.contains(&dir) {
                return Err(VmError::NotFound { path: dir.clone() });
            }
            let prefix = if dir == "/" {
                dir.clone()
            } else {
                format!("{dir}/")
            };
            let under = |p: &&String| p.starts_with(&prefix);
            let dirs: Vec<String> = fs.dirs.iter().filter(under).cloned().collect();
            let files: Vec<(String, Vec<u8>, u32)> = fs
                .files
                .iter()
                .filter(|(p, _)| p.starts_with(&prefix))
                .map(|(p, (d, m))| (p[prefix.len()..].to_owned(), d.clone(), *m))
                .collect();
            let dirs = dirs
                .into_iter()
                .map(|d| d[prefix.len()..].to_owned())
                .collect();
            Ok((dirs, files))
        })?;
        write_tar(dirs, files).map_err(|e| VmError::io("archive", &dir, e))
    }

    async fn release(self: Box<Self>) -> Result<(), VmError> {
        Ok(()) // Drop marks it dead.
    }

    fn is_alive(&self) -> bool {
        let shared = self.provider.lock();
        shared.live.contains(&self.id) && !shared.sick.contains(&self.id)
    }

    async fn health_check(&self) -> Result<(), VmError> {
        if self.is_alive() {
            Ok(())
        } else {
            Err(VmError::Released(self.id.to_string()))
        }
    }
}

impl Drop for MockVm {
    fn drop(&mut self) {
        self.provider.lock().live.remove(&self.id);
    }
}

impl MockFs {
    fn mkdir_all(&mut self, path: &str) {
        let mut cur = String::new();
        self.dirs.insert("/".to_owned());
        for part in path.split('/').filter(|p| !p.is_empty()) {
            cur.push('/');
            cur.push_str(part);
            self.dirs.insert(cur.clone());
        }
    }

    fn write(&mut self, path: String, data: Vec<u8>, mode: u32) -> Result<(), VmError> {
        if self.dirs.contains(&path) {
            return Err(VmError::InvalidPath {
                path,
                reason: "is a directory",
            });
        }
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.mkdir_all(parent);
        }
        self.files.insert(path, (data, mode & 0o7777));
        Ok(())
    }
}

fn join(dir: &str, rel: &str) -> String {
    match (dir, rel) {
        (dir, "") => dir.to_owned(),
        ("/", rel) => format!("/{rel}"),
        (dir, rel) => format!("{dir}/{rel}"),
    }
}

struct TarEntry {
    rel: String,
    /// `None` for a directory.
    data: Option<Vec<u8>>,
    mode: u32,
}

/// Files and directories of a tar; anything else (links, devices) or a path
/// leaving the directory is refused, as the mock has no such things.
fn read_tar(tar: &[u8]) -> io::Result<Vec<TarEntry>> {
    let mut archive = tar::Archive::new(Cursor::new(tar));
    let mut out = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let mut parts = Vec::new();
        for component in entry.path()?.components() {
            match component {
                Component::CurDir => {}
                Component::Normal(p) => parts.push(
                    p.to_str()
                        .ok_or_else(|| invalid("non-UTF-8 path in archive"))?
                        .to_owned(),
                ),
                _ => return Err(invalid("archive path leaves the directory")),
            }
        }
        let mode = entry.header().mode()?;
        let data = match entry.header().entry_type() {
            tar::EntryType::Directory => None,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut data = Vec::new();
                entry.read_to_end(&mut data)?;
                Some(data)
            }
            _ => {
                return Err(invalid(
                    "the mock backend stores only files and directories",
                ));
            }
        };
        out.push(TarEntry {
            rel: parts.join("/"),
            data,
            mode,
        });
    }
    Ok(out)
}

fn write_tar(dirs: Vec<String>, files: Vec<(String, Vec<u8>, u32)>) -> io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for dir in dirs {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_size(0);
        builder.append_data(&mut header, &dir, io::empty())?;
    }
    for (path, data, mode) in files {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(mode);
        header.set_size(data.len() as u64);
        builder.append_data(&mut header, &path, data.as_slice())?;
    }
    builder.into_inner()
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

#[cfg(test)]
mod tests;
