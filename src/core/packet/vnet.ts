// The virtio_net_hdr that precedes every packet on a TUN opened with IFF_VNET_HDR (include/uapi/
// linux/virtio_net.h). Its fields are little-endian on the hosts we run on. A NAT rewrite keeps
// header lengths, so the same header is written back unchanged.

export const VNET_HDR_LEN = 10;

/** The L4 checksum is partial: its field holds the pseudo-header sum, the device completes it. */
export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
/** The checksum was already verified. */
export const VIRTIO_NET_HDR_F_DATA_VALID = 2;

export const VIRTIO_NET_HDR_GSO_NONE = 0;
export const VIRTIO_NET_HDR_GSO_TCPV4 = 1;
export const VIRTIO_NET_HDR_GSO_UDP = 3;
export const VIRTIO_NET_HDR_GSO_TCPV6 = 4;
export const VIRTIO_NET_HDR_GSO_UDP_L4 = 5;
/** Or-ed into gso_type: the TCP stream uses ECN (CWR set on the first segment only). */
export const VIRTIO_NET_HDR_GSO_ECN = 0x80;

export interface VnetHdr {
  flags: number;
  gsoType: number;
  /** Bytes of headers (L3 + L4) repeated in every segment. */
  hdrLen: number;
  /** Payload bytes per segment. */
  gsoSize: number;
  /** Where checksumming starts, from the start of the packet (after this header). */
  csumStart: number;
  /** Where the checksum field is, from csumStart. */
  csumOffset: number;
}

function readLe16(buf: Uint8Array, off: number): number {
  return buf[off] | (buf[off + 1] << 8);
}

function writeLe16(buf: Uint8Array, off: number, value: number): void {
  buf[off] = value;
  buf[off + 1] = value >>> 8;
}

/** The flags byte alone: all the NAT rewrite needs on the hot path. */
export function vnetFlags(buf: Uint8Array, off: number): number {
  return buf[off];
}

export function readVnetHdr(buf: Uint8Array, off: number): VnetHdr {
  return {
    flags: buf[off],
    gsoType: buf[off + 1],
    hdrLen: readLe16(buf, off + 2),
    gsoSize: readLe16(buf, off + 4),
    csumStart: readLe16(buf, off + 6),
    csumOffset: readLe16(buf, off + 8),
  };
}

export function writeVnetHdr(buf: Uint8Array, off: number, hdr: VnetHdr): void {
  buf[off] = hdr.flags;
  buf[off + 1] = hdr.gsoType;
  writeLe16(buf, off + 2, hdr.hdrLen);
  writeLe16(buf, off + 4, hdr.gsoSize);
  writeLe16(buf, off + 6, hdr.csumStart);
  writeLe16(buf, off + 8, hdr.csumOffset);
}

/** A header for a plain packet with a complete checksum and no segmentation (what the director builds). */
export function writePlainVnetHdr(buf: Uint8Array, off: number): void {
  buf.fill(0, off, off + VNET_HDR_LEN);
}

/** Whether a frame with this header and payload is a GSO super-packet: more than one segment on the wire. */
export function isSuperPacket(vnet: VnetHdr, payloadLength: number): boolean {
  return vnet.gsoType !== VIRTIO_NET_HDR_GSO_NONE && vnet.gsoSize > 0 && payloadLength > vnet.gsoSize;
}
