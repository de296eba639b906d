// Reads "c t h b", "p t h b" or "b base n d1 v1 ... dn vn" lines and prints
// the frame seed_frames.h encodes, in hex, or "err <code>".
#include <stdio.h>
#include <string.h>

#include "seed_frames.h"

int main(void) {
  char kind;
  while (scanf(" %c", &kind) == 1) {
    uint8_t out[BATCH_HEADER_LEN + BATCH_MAX * BATCH_READING_LEN];
    int len;
    if (kind == 'c' || kind == 'p') {
      double t, h, b;
      if (scanf("%lf %lf %lf", &t, &h, &b) != 3) return 2;
      len = kind == 'c' ? compact_i16(t, h, b, out) : bitpacked(t, h, b, out);
    } else if (kind == 'b') {
      unsigned long base;
      size_t n;
      static uint16_t d[BATCH_MAX + 1];
      static double v[BATCH_MAX + 1];
      if (scanf("%lu %zu", &base, &n) != 2 || n > BATCH_MAX + 1) return 2;
      for (size_t i = 0; i < n; i++) {
        unsigned dd;
        if (scanf("%u %lf", &dd, &v[i]) != 2) return 2;
        d[i] = (uint16_t)dd;
      }
      len = batch((uint32_t)base, d, v, n, out, sizeof out);
    } else {
      return 2;
    }
    if (len < 0) {
      printf("err %d\n", len);
      continue;
    }
    for (int i = 0; i < len; i++) printf("%02x", out[i]);
    printf("\n");
  }
  return 0;
}
