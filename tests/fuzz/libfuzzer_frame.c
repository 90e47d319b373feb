/*
 * libfuzzer_frame — coverage-guided fuzzing of the frame reader and the budgeted unpack
 * (libFuzzer; built only when the compiler is clang, see CMakeLists.txt).
 *
 * Input layout: byte 0 picks max_frame, byte 1 the budget, byte 2 seeds the chunk sizes;
 * the rest is the byte stream fed to a frame_reader in those chunks.  Every frame is
 * unpacked as a Request and as a Response; a peak above the budget, or a frame whose
 * length breaks the reader's limits, aborts.  ASan (linked in) catches the rest.
 *   ./pp-fuzz-frame -max_total_time=60 corpus/
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const uint32_t max_frames[4] = {64, 300, 4096, FRAME_MAX_DEFAULT};
  static const size_t budgets[4] = {256, 4096, 65536, 1u << 22};
  if (size < 3) return 0;
  uint32_t max_frame = max_frames[data[0] & 3];
  size_t budget = budgets[data[1] & 3];
  uint32_t seed = data[2] | 1u;
  data += 3;
  size -= 3;

  frame_reader_t r;
  frame_reader_init(&r, max_frame);
  size_t off = 0;
  while (off < size) {
    seed = seed * 1103515245u + 12345u;
    size_t chunk = 1 + (seed >> 16) % 64;
    if (chunk > size - off) chunk = size - off;
    const uint8_t *f;
    size_t flen;
    int n = frame_reader_feed(&r, data + off, chunk, &f, &flen);
    if (n < 0) break;
    off += (size_t)n;
    if (r.cap > max_frame) abort();
    if (!f) continue;
    if (flen == 0 || flen > max_frame) abort();
    const ProtobufCMessageDescriptor *d[2] = {&pinpool__v1__request__descriptor,
                                              &pinpool__v1__response__descriptor};
    for (int i = 0; i < 2; i++) {
      size_t peak = 0;
      ProtobufCMessage *m = frame_unpack_budgeted(d[i], f, flen, budget, &peak);
      if (peak > budget) abort();
      if (m) {
        uint8_t *buf;
        size_t len;
        if (frame_pack(m, FRAME_MAX_LIMIT, &buf, &len) == 0) free(buf);
        frame_free_message(m);
      }
    }
  }
  frame_reader_free(&r);
  return 0;
}
