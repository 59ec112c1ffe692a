/**
 * vmlinux out of a bzImage (vmlinuz): the x86 boot protocol's setup header gives where the
 * compressed kernel lies (Documentation/x86/boot.rst: setup_sects at 0x1f1, "HdrS" at 0x202,
 * payload_offset/payload_length at 0x248/0x24c, protocol >= 2.08), and its first bytes say how it
 * is compressed. gzip is inflated by node's zlib; xz, zstd, lz4 and bzip2 by the Debian tools
 * (xz-utils, zstd, liblz4-tool, bzip2), which read exactly the formats the kernel's build writes.
 */
import { spawnSync } from 'node:child_process';
import { gunzipSync, constants as zlibConstants } from 'node:zlib';
import { BzImageError } from './errors.ts';

export type PayloadCompression = 'gzip' | 'xz' | 'zstd' | 'lz4' | 'bzip2' | 'lzma' | 'none';

export interface BzImagePayload {
  /** Offset of the compressed payload in the bzImage file. */
  offset: number;
  length: number;
  compression: PayloadCompression;
  /** Boot protocol version, e.g. 0x20f. */
  protocol: number;
}

function startsWith(b: Uint8Array, at: number, magic: readonly number[]): boolean {
  return magic.every((m, i) => b[at + i] === m);
}

/** What compressed the payload, from its magic bytes (the same magics the kernel's decompressors check). */
export function payloadCompression(b: Uint8Array, at = 0): PayloadCompression | undefined {
  if (startsWith(b, at, [0x1f, 0x8b])) return 'gzip';
  if (startsWith(b, at, [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])) return 'xz';
  if (startsWith(b, at, [0x28, 0xb5, 0x2f, 0xfd])) return 'zstd';
  if (startsWith(b, at, [0x02, 0x21, 0x4c, 0x18])) return 'lz4'; // lz4 legacy frame (lz4 -l)
  if (startsWith(b, at, [0x42, 0x5a, 0x68])) return 'bzip2';
  if (startsWith(b, at, [0x5d, 0x00, 0x00])) return 'lzma';
  if (startsWith(b, at, [0x7f, 0x45, 0x4c, 0x46])) return 'none';
  return undefined;
}

/** Locate the compressed kernel inside a bzImage. */
export function findPayload(image: Uint8Array, file = 'bzImage'): BzImagePayload {
  if (image.length < 0x250) throw new BzImageError(file, `only ${image.length} bytes: neither an ELF file nor a bzImage`);
  const v = new DataView(image.buffer, image.byteOffset, image.byteLength);
  if (v.getUint32(0x202, true) !== 0x53726448) throw new BzImageError(file, 'neither an ELF file (no 7f 45 4c 46 magic) nor a bzImage (no "HdrS" signature at 0x202)');
  const protocol = v.getUint16(0x206, true);
  if (protocol < 0x208) throw new BzImageError(file, `boot protocol ${protocol.toString(16)} predates payload_offset (2.08)`);
  const setupSects = image[0x1f1] === 0 ? 4 : image[0x1f1]!;
  const pmStart = (setupSects + 1) * 512;
  const offset = pmStart + v.getUint32(0x248, true);
  const length = v.getUint32(0x24c, true);
  if (offset + length > image.length) throw new BzImageError(file, `payload [${offset}, +${length}) runs past the end of the file`);
  const compression = payloadCompression(image, offset);
  if (compression === undefined) throw new BzImageError(file, `payload at ${offset} has unknown magic ${Array.from(image.subarray(offset, offset + 4), (x) => x.toString(16)).join(' ')}`);
  return { offset, length, compression, protocol };
}

const TOOLS: Record<Exclude<PayloadCompression, 'gzip' | 'none'>, { cmd: string; args: string[]; pkg: string }> = {
  xz: { cmd: 'xz', args: ['-dc', '--single-stream'], pkg: 'xz-utils' },
  lzma: { cmd: 'xz', args: ['-dc', '--format=lzma'], pkg: 'xz-utils' },
  zstd: { cmd: 'zstd', args: ['-dc'], pkg: 'zstd' },
  lz4: { cmd: 'lz4', args: ['-dc'], pkg: 'lz4' },
  bzip2: { cmd: 'bzip2', args: ['-dc'], pkg: 'bzip2' },
};

/** Decompress one payload. The kernel appends the decompressed size (4 bytes) after some formats; tools ignore it. */
export function decompressPayload(data: Uint8Array, compression: PayloadCompression, file = 'bzImage'): Uint8Array {
  if (compression === 'none') return data;
  if (compression === 'gzip') {
    try {
      return gunzipSync(data, { finishFlush: zlibConstants.Z_SYNC_FLUSH });
    } catch (err) {
      throw new BzImageError(file, `gzip payload: ${(err as Error).message}`);
    }
  }
  const tool = TOOLS[compression];
  const r = spawnSync(tool.cmd, tool.args, { input: data, maxBuffer: 1 << 30 });
  if (r.error !== undefined) throw new BzImageError(file, `${compression} payload needs '${tool.cmd}' (Debian package ${tool.pkg}): ${r.error.message}`);
  // Trailing bytes after the stream (the appended size) make some tools warn and exit non-zero
  // after writing everything; accept any output that is an ELF file.
  const out = new Uint8Array(r.stdout.buffer, r.stdout.byteOffset, r.stdout.byteLength);
  if (payloadCompression(out) !== 'none') {
    throw new BzImageError(file, `${tool.cmd} did not produce an ELF file: ${String(r.stderr).trim().split('\n')[0] ?? ''}`);
  }
  return out;
}

/** vmlinux (ELF) from a bzImage; an ELF input is returned unchanged. */
export function extractVmlinux(image: Uint8Array, file = 'bzImage'): Uint8Array {
  if (payloadCompression(image) === 'none') return image;
  const p = findPayload(image, file);
  return decompressPayload(image.subarray(p.offset, p.offset + p.length), p.compression, file);
}
