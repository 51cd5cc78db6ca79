/* SPDX-License-Identifier: MIT */
/* crc32c (Castagnoli), as iSCSI, ext4 and btrfs use it. */
#ifndef KVC_SWAP_CRC32C_H
#define KVC_SWAP_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/**
 * kvc_crc32c() - Extend a crc32c over more bytes.
 * @crc: the crc of the bytes so far (0 for none).
 * @buf: the next bytes.
 * @len: how many.
 *
 * The usual convention (initial ~0, final xor ~0 inside): the crc of
 * "123456789" is 0xe3069283, and kvc_crc32c(kvc_crc32c(0, a, n), b, m) is
 * the crc of a followed by b. SSE4.2's crc32 instruction where the CPU has
 * it (checked once), slicing-by-8 tables elsewhere: both give the same
 * value.
 *
 * Return: the crc.
 */
uint32_t kvc_crc32c(uint32_t crc, const void *buf, size_t len);

/**
 * kvc_crc32c_sw() - kvc_crc32c() without the CPU instruction (the
 * portable tables), for tests that compare the two.
 * @crc: as kvc_crc32c().
 * @buf: as kvc_crc32c().
 * @len: as kvc_crc32c().
 *
 * Return: the crc.
 */
uint32_t kvc_crc32c_sw(uint32_t crc, const void *buf, size_t len);

/**
 * kvc_crc32c_impl() - Which implementation kvc_crc32c() uses.
 *
 * Return: "sse4.2" or "table".
 */
const char *kvc_crc32c_impl(void);

#endif /* KVC_SWAP_CRC32C_H */
