/**
 * A raw disk image file that backs the virtio block device (as QEMU's
 * `-drive file=IMAGE,format=raw`). The image is used in place: writes go straight to
 * the file, through synchronous `fs` calls on one file descriptor, so an image the
 * guest changed is up to date on disk as soon as the request completes (the page
 * cache may still hold it; `flush()` makes it durable, as a guest FLUSH does).
 *
 * Every problem found when opening is reported as a DiskImageError naming the path
 * and saying what to do, because this is what a user sees first when a `--disk`
 * argument is wrong.
 */
import * as fs from 'node:fs';

/** Bytes in one sector: virtio-blk counts capacity and offsets in 512-byte sectors. */
export const SECTOR_SIZE = 512;

export interface DiskImageOptions {
  /** Open without write access; the guest sees a read-only disk. */
  readOnly?: boolean;
  /**
   * Refuse a writable image that another VM, in this process or another, has open for writing
   * (two writers would corrupt it; QEMU locks its images for the same reason). See ImageLock.
   */
  exclusive?: boolean;
}

export class DiskImageError extends Error {
  override readonly name = 'DiskImageError';
  constructor(
    readonly path: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`disk image ${path}: ${message}`, options);
  }
}

function errorCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e ? String((e as { code: unknown }).code) : undefined;
}

/**
 * The write lock of an image: a set of the images this process holds, and across processes a
 * lock file IMAGE.lock created exclusively (O_EXCL) holding the owner's pid. Node has no fcntl
 * locks, so a file it is; a lock left by a process that died (SIGKILL, a crash) names a pid that
 * no longer runs and is taken over. Where no file can be created beside the image (a read-only
 * folder), only this process's own VMs are kept apart.
 */
class ImageLock {
  private static readonly held = new Map<string, ImageLock>();

  private constructor(
    private readonly key: string,
    private readonly file: string | undefined,
  ) {}

  static acquire(path: string): ImageLock {
    const key = fs.realpathSync(path);
    if (ImageLock.held.has(key)) throw new DiskImageError(path, 'is already open for writing by another VM of this run');
    const file = `${key}.lock`;
    let created: string | undefined;
    for (let attempt = 0; attempt < 2 && created === undefined; attempt++) {
      try {
        fs.writeFileSync(file, `${process.pid}\n`, { flag: 'wx' });
        created = file;
      } catch (e) {
        const code = errorCode(e);
        if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') break; // no lock file possible here
        if (code !== 'EEXIST') throw new DiskImageError(path, `cannot create its lock file ${file}: ${(e as Error).message}`);
        const text = readLockFile(file);
        if (text === undefined && attempt === 0) continue; // released meanwhile
        const owner = Number.parseInt(text ?? '', 10);
        // No pid yet (its owner is between creating and writing it): in use, not stale.
        if (attempt === 0 && Number.isInteger(owner) && owner > 0 && !processRuns(owner)) {
          // Stale: its owner is gone. (Two runs taking over the same stale lock at the same
          // instant could both succeed: a best effort, as lock files are.)
          fs.rmSync(file, { force: true });
          continue;
        }
        throw new DiskImageError(
          path,
          `is open for writing by another kmemvisor (pid ${Number.isNaN(owner) ? '?' : owner}, lock file ${file}); ` +
            `open it read-only (--drive file=IMAGE,readonly=on), or remove the lock file if no such process runs`,
        );
      }
    }
    const lock = new ImageLock(key, created);
    ImageLock.held.set(key, lock);
    return lock;
  }

  release(): void {
    if (ImageLock.held.get(this.key) !== this) return;
    ImageLock.held.delete(this.key);
    if (this.file !== undefined) fs.rmSync(this.file, { force: true });
  }

  /** On process.exit (the CLI's normal end), lock files of images never closed are removed too. */
  static releaseAll(): void {
    for (const lock of [...ImageLock.held.values()]) lock.release();
  }
}
process.on('exit', () => ImageLock.releaseAll());

/** A lock file's text, or undefined when it vanished meanwhile (its owner released it). */
function readLockFile(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    if (errorCode(e) === 'ENOENT') return undefined;
    return '';
  }
}

/** Whether process `pid` exists (EPERM: it does, owned by someone else). */
function processRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return errorCode(e) === 'EPERM';
  }
}

export class DiskImage {
  /** Size of the image in bytes (a multiple of SECTOR_SIZE, never 0). */
  readonly sizeBytes: number;
  private fd: number | undefined;

  private constructor(
    readonly path: string,
    fd: number,
    sizeBytes: number,
    readonly readOnly: boolean,
    private readonly lock: ImageLock | undefined,
  ) {
    this.fd = fd;
    this.sizeBytes = sizeBytes;
  }

  /**
   * Open an existing raw image. Throws DiskImageError when the file is missing, is a
   * directory (or not a regular file), is empty, is not a whole number of sectors,
   * or cannot be opened for writing while `readOnly` was not asked for.
   */
  static open(path: string, options: DiskImageOptions = {}): DiskImage {
    const readOnly = options.readOnly ?? false;
    let st: fs.Stats;
    try {
      st = fs.statSync(path);
    } catch (e) {
      const code = errorCode(e);
      if (code === 'ENOENT') throw new DiskImageError(path, 'no such file', { cause: e });
      if (code === 'ENOTDIR') throw new DiskImageError(path, 'a component of the path is not a directory', { cause: e });
      if (code === 'EACCES') throw new DiskImageError(path, 'permission denied while looking up the file', { cause: e });
      throw new DiskImageError(path, `cannot stat: ${(e as Error).message}`, { cause: e });
    }
    if (st.isDirectory()) throw new DiskImageError(path, 'is a directory, not a disk image file');
    if (!st.isFile()) throw new DiskImageError(path, 'is not a regular file (raw image files only)');
    if (st.size === 0) throw new DiskImageError(path, 'is empty (0 bytes); create it with e.g. `truncate -s 64M IMAGE`');
    if (st.size % SECTOR_SIZE !== 0) {
      throw new DiskImageError(
        path,
        `size ${st.size} bytes is not a multiple of ${SECTOR_SIZE} bytes ` +
          `(${st.size % SECTOR_SIZE} bytes past the last whole sector); pad or truncate it to whole sectors`,
      );
    }
    const readOnlyHint = 'open it read-only (--drive file=IMAGE,readonly=on) or fix the file permissions';
    // A file no one may write (mode 0444 and the like) is treated as write-protected even
    // for root, who would otherwise be allowed to open it read-write: such a file is
    // almost always a golden image that must not change.
    if (!readOnly && (st.mode & 0o222) === 0) {
      throw new DiskImageError(path, `is write-protected (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}); ${readOnlyHint}`);
    }
    let fd: number;
    try {
      fd = fs.openSync(path, readOnly ? 'r' : 'r+');
    } catch (e) {
      const code = errorCode(e);
      if (code === 'EACCES' || code === 'EPERM') {
        throw new DiskImageError(
          path,
          readOnly ? 'no read permission' : `no write permission; ${readOnlyHint}`,
          { cause: e },
        );
      }
      if (code === 'EROFS') throw new DiskImageError(path, `is on a read-only file system; ${readOnlyHint}`, { cause: e });
      if (code === 'ETXTBSY') throw new DiskImageError(path, `is busy (being executed); ${readOnlyHint}`, { cause: e });
      throw new DiskImageError(path, `cannot open: ${(e as Error).message}`, { cause: e });
    }
    let lock: ImageLock | undefined;
    try {
      if (options.exclusive && !readOnly) lock = ImageLock.acquire(path);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
    return new DiskImage(path, fd, st.size, readOnly, lock);
  }

  /** Capacity in 512-byte sectors. */
  get sectors(): number {
    return this.sizeBytes / SECTOR_SIZE;
  }

  get closed(): boolean {
    return this.fd === undefined;
  }

  /** Read `count` whole sectors starting at `sector`. */
  readSectors(sector: number, count: number): Uint8Array {
    this.checkSectors(sector, count);
    return this.readBytes(sector * SECTOR_SIZE, count * SECTOR_SIZE);
  }

  /** Write whole sectors (data.length must be a multiple of 512) starting at `sector`. */
  writeSectors(sector: number, data: Uint8Array): void {
    if (data.length % SECTOR_SIZE !== 0) {
      throw new RangeError(`writeSectors: ${data.length} bytes is not a whole number of sectors`);
    }
    this.checkSectors(sector, data.length / SECTOR_SIZE);
    this.writeBytes(sector * SECTOR_SIZE, data);
  }

  /**
   * Read `length` bytes at byte `offset` (the device moves scatter-gather segments that
   * need not be sector-sized on their own). The range must lie inside the image.
   */
  readBytes(offset: number, length: number): Uint8Array {
    this.checkBytes(offset, length);
    const fd = this.descriptor();
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const n = fs.readSync(fd, out, done, length - done, offset + done);
      if (n === 0) throw new DiskImageError(this.path, `unexpected end of file at byte ${offset + done} (was the file truncated?)`);
      done += n;
    }
    return out;
  }

  /** Write `data` at byte `offset`; the range must lie inside the image. */
  writeBytes(offset: number, data: Uint8Array): void {
    if (this.readOnly) throw new DiskImageError(this.path, 'write to an image opened read-only');
    this.checkBytes(offset, data.length);
    const fd = this.descriptor();
    let done = 0;
    while (done < data.length) {
      done += fs.writeSync(fd, data, done, data.length - done, offset + done);
    }
  }

  /** Make completed writes durable (fsync). */
  flush(): void {
    const fd = this.descriptor();
    if (!this.readOnly) fs.fsyncSync(fd);
  }

  /** Close the file; further I/O throws. Closing twice is harmless. */
  close(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    fs.closeSync(fd);
    this.lock?.release();
  }

  private descriptor(): number {
    if (this.fd === undefined) throw new DiskImageError(this.path, 'image is closed');
    return this.fd;
  }

  private checkSectors(sector: number, count: number): void {
    if (!Number.isSafeInteger(sector) || !Number.isSafeInteger(count) || sector < 0 || count < 0 || sector + count > this.sectors) {
      throw new RangeError(`sectors ${sector}+${count} outside the image (${this.sectors} sectors)`);
    }
  }

  private checkBytes(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.sizeBytes) {
      throw new RangeError(`bytes ${offset}+${length} outside the image (${this.sizeBytes} bytes)`);
    }
  }
}
