// Emulator model of cp.async (kernels/common/cp_async.cuh) for the host replays: one queue per thread,
// grouped by commit. At issue the destination is poisoned at once (until the copy completes its bytes are
// undefined: a copy into a buffer that other threads still read in the same barrier interval shows), and
// the data lands only when a wait retires the group (reading a tile before its wait shows). Used by the
// conv2d replay (block_replay.cuh) and the depthwise tiled kernel's replay.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "common/cp_async.cuh"

namespace cnnkern {

constexpr unsigned char kSmemPoison = 0x7f;  // 0x7f7f: NaN in fp16, ~3.4e38 in bf16 and fp32

struct ThreadAsyncQueue final : HostAsyncSink {
  struct Copy {
    void* dst;
    unsigned char data[16];
  };
  std::vector<Copy> open;
  std::vector<std::vector<Copy>> groups;  // committed, oldest first

  void copy16(void* dst, const void* src, bool valid) override {
    if (reinterpret_cast<uintptr_t>(dst) % 16 != 0 || (valid && reinterpret_cast<uintptr_t>(src) % 16 != 0)) {
      std::fprintf(stderr, "cp.async: misaligned 16-byte copy\n");  // stderr: stdout is lost at abort()
      std::abort();
    }
    Copy c;
    c.dst = dst;
    if (valid) {
      std::memcpy(c.data, src, 16);  // global memory does not change during the kernel
    } else {
      std::memset(c.data, 0, 16);
    }
    std::memset(dst, kSmemPoison, 16);
    open.push_back(c);
  }
  void commit() override {
    groups.push_back(open);
    open.clear();
  }
  // cp.async.wait_group n: every committed group except the n most recent has landed.
  void wait(int n) {
    while (static_cast<int>(groups.size()) > n) {
      for (const Copy& c : groups.front()) std::memcpy(c.dst, c.data, 16);
      groups.erase(groups.begin());
    }
  }
  void reset() {
    open.clear();
    groups.clear();
  }
};

}  // namespace cnnkern
