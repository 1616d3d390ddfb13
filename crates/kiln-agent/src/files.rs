//! File and archive transfers. Uploads arrive in chunks through a bounded
//! channel (the read loop waits when the disk is slow); downloads leave in
//! chunks through the reply queue (the task waits when the host is slow).

use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use bytes::{Buf, Bytes, BytesMut};
use kiln_protocol::{DATA_CHUNK_LEN, Reply, RequestId};
use tokio::fs;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Chunks buffered between the read loop and an upload task.
const UPLOAD_QUEUE: usize = 4;

struct Chunk {
    data: Bytes,
    last: bool,
}

/// The read loop's handle on an upload in progress.
pub(crate) struct Upload {
    chunks: mpsc::Sender<Chunk>,
}

impl Upload {
    /// Writes the chunks to `path` (parents created, replaced if present),
    /// then sets `mode`.
    pub(crate) fn file(
        id: RequestId,
        path: String,
        mode: u32,
        replies: mpsc::Sender<Reply>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(UPLOAD_QUEUE);
        tokio::spawn(async move {
            let result = write_file(Path::new(&path), mode, rx).await;
            let reply = verdict(id, result, || format!("cannot write {path}"));
            let _ = replies.send(reply).await;
        });
        Upload { chunks: tx }
    }

    /// Unpacks the chunks, a tar stream, below `dir` (created).
    pub(crate) fn archive(id: RequestId, dir: String, replies: mpsc::Sender<Reply>) -> Self {
        let (tx, rx) = mpsc::channel(UPLOAD_QUEUE);
        tokio::spawn(async move {
            let target = PathBuf::from(&dir);
            let result = blocking(move || unpack(&target, ChannelReader::new(rx))).await;
            let reply = verdict(id, result, || format!("cannot unpack into {dir}"));
            let _ = replies.send(reply).await;
        });
        Upload { chunks: tx }
    }

    /// A closed channel means the task already failed and replied; later
    /// chunks are dropped.
    pub(crate) async fn feed(&self, data: Bytes, last: bool) {
        let _ = self.chunks.send(Chunk { data, last }).await;
    }
}

fn verdict(id: RequestId, result: io::Result<()>, context: impl FnOnce() -> String) -> Reply {
    match result {
        Ok(()) => Reply::Ok { id },
        Err(e) => Reply::Error {
            id,
            message: format!("{}: {e}", context()),
        },
    }
}

fn incomplete() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "upload ended before its last chunk",
    )
}

async fn write_file(path: &Path, mode: u32, mut rx: mpsc::Receiver<Chunk>) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).await?;
    }
    let mode = mode & 0o7777;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .await?;
    loop {
        let chunk = rx.recv().await.ok_or_else(incomplete)?;
        file.write_all(&chunk.data).await?;
        if chunk.last {
            break;
        }
    }
    // tokio's File finishes writes in the background: flush to see errors.
    file.flush().await?;
    // `mode` on open is filtered by the umask and ignored for an existing
    // file; the caller asked for these exact bits.
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .await
}

fn unpack(dir: &Path, mut reader: ChannelReader) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut archive = tar::Archive::new(&mut reader);
    archive.set_preserve_permissions(true);
    archive.set_overwrite(true);
    // Entries that would land outside `dir` (`..`, absolute paths, through
    // symlinks) are refused by the tar crate.
    archive.unpack(dir)?;
    // tar stops at its end-of-archive marker; consume any padding after it so
    // the upload completes cleanly.
    io::copy(&mut reader, &mut io::sink())?;
    Ok(())
}

/// A blocking `Read` over the upload channel, for the tar crate.
struct ChannelReader {
    rx: mpsc::Receiver<Chunk>,
    current: Bytes,
    done: bool,
}

impl ChannelReader {
    fn new(rx: mpsc::Receiver<Chunk>) -> Self {
        ChannelReader {
            rx,
            current: Bytes::new(),
            done: false,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            if self.done {
                return Ok(0);
            }
            let chunk = self.rx.blocking_recv().ok_or_else(incomplete)?;
            self.done = chunk.last;
            self.current = chunk.data;
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

/// Sends the file as `Data` chunks, then `Ok`.
pub(crate) fn spawn_get_file(id: RequestId, path: String, replies: mpsc::Sender<Reply>) {
    tokio::spawn(async move {
        let result = read_file(id, Path::new(&path), &replies).await;
        let reply = verdict(id, result, || format!("cannot read {path}"));
        let _ = replies.send(reply).await;
    });
}

async fn read_file(id: RequestId, path: &Path, replies: &mpsc::Sender<Reply>) -> io::Result<()> {
    let mut file = fs::File::open(path).await?;
    loop {
        let mut buf = BytesMut::with_capacity(DATA_CHUNK_LEN);
        while buf.len() < DATA_CHUNK_LEN {
            if file.read_buf(&mut buf).await? == 0 {
                break;
            }
        }
        if buf.is_empty() {
            return Ok(());
        }
        let data = buf.freeze();
        replies
            .send(Reply::Data { id, data })
            .await
            .map_err(|_| host_gone())?;
    }
}

/// Sends a tar of `dir` as `Data` chunks, then `Ok`.
pub(crate) fn spawn_get_archive(id: RequestId, dir: String, replies: mpsc::Sender<Reply>) {
    tokio::spawn(async move {
        let source = PathBuf::from(&dir);
        let writer = ChannelWriter::new(id, replies.clone());
        let result = blocking(move || pack(&source, writer)).await;
        let reply = verdict(id, result, || format!("cannot archive {dir}"));
        let _ = replies.send(reply).await;
    });
}

fn pack(dir: &Path, writer: ChannelWriter) -> io::Result<()> {
    if !std::fs::metadata(dir)?.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            "not a directory",
        ));
    }
    let mut builder = tar::Builder::new(writer);
    // Symlinks are stored as links, never followed: an archive cannot pull in
    // files from outside `dir`.
    builder.follow_symlinks(false);
    builder.append_dir_all(".", dir)?;
    builder.into_inner()?.flush()
}

/// A blocking `Write` that cuts what the tar crate writes into `Data` chunks.
struct ChannelWriter {
    id: RequestId,
    replies: mpsc::Sender<Reply>,
    buf: BytesMut,
}

impl ChannelWriter {
    fn new(id: RequestId, replies: mpsc::Sender<Reply>) -> Self {
        ChannelWriter {
            id,
            replies,
            buf: BytesMut::with_capacity(DATA_CHUNK_LEN),
        }
    }

    fn send_buffered(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = self.buf.split().freeze();
        self.replies
            .blocking_send(Reply::Data { id: self.id, data })
            .map_err(|_| host_gone())
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = DATA_CHUNK_LEN - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= DATA_CHUNK_LEN {
            self.send_buffered()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buffered()
    }
}

fn host_gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the host connection is gone")
}

/// Runs filesystem work off the async threads.
async fn blocking<F>(f: F) -> io::Result<()>
where
    F: FnOnce() -> io::Result<()> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io::Error::other(format!("transfer task failed: {e}")))?
}
