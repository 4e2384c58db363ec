/* rl_host.c: the firmware app's portable core (rl_obs.c + the generated policy) on the host.
 *
 *   rl_host check         layout check (0 = rl_policy.h matches what rl_obs.c builds)
 *   rl_host step < rows   rows: pos[3] vel[3] quat_xyzw[4] gyro_dps[3] goal[3]; one rl_step per row (the action
 *                         history carries over), printing the normalized action[4] and forces[4], or "reject"
 *   rl_host bench N       time N steps: prints microseconds per step */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rl_obs.h"

static rl_ctx_t ctx;

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec * 1e-3;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s check | step | bench N\n", argv[0]);
    return 2;
  }
  rl_ctx_reset(&ctx);
  if (!strcmp(argv[1], "check")) {
    int bad = rl_obs_check_layout();
    printf("%d\n", bad);
    return bad ? 1 : 0;
  }
  if (!strcmp(argv[1], "step")) {
    rl_state_t s;
    float forces[RL_NUM_MOTORS];
    for (;;) {
      float v[16];
      int n = 0;
      for (; n < 16; n++)
        if (scanf("%f", &v[n]) != 1) break;
      if (n == 0) break;
      if (n != 16) {
        fprintf(stderr, "a row needs 16 numbers, got %d\n", n);
        return 2;
      }
      memcpy(s.pos, v, sizeof(s.pos));
      memcpy(s.vel, v + 3, sizeof(s.vel));
      memcpy(s.quat, v + 6, sizeof(s.quat));
      memcpy(s.gyro_dps, v + 10, sizeof(s.gyro_dps));
      memcpy(s.goal, v + 13, sizeof(s.goal));
      if (!rl_step(&s, &ctx, forces)) {
        printf("reject\n");
        continue;
      }
      for (int i = 0; i < RL_POLICY_ACTION_DIM; i++) printf("%.9g ", ctx.action[i]);
      for (int i = 0; i < RL_NUM_MOTORS; i++) printf("%.9g%c", forces[i], i + 1 < RL_NUM_MOTORS ? ' ' : '\n');
    }
    return 0;
  }
  if (!strcmp(argv[1], "bench") && argc == 3) {
    long n = atol(argv[2]);
    rl_state_t s = {{0.1f, -0.05f, 1.0f}, {0.0f, 0.1f, 0.0f}, {0.0f, 0.0f, 0.0f, 1.0f}, {1.0f, -2.0f, 0.5f},
                    {0.0f, 0.0f, 1.0f}};
    float forces[RL_NUM_MOTORS];
    volatile float sink = 0.0f;
    for (long i = 0; i < n / 10 + 1; i++) rl_step(&s, &ctx, forces); /* warm-up */
    double t0 = now_us();
    for (long i = 0; i < n; i++) {
      s.pos[0] = 0.1f + 1e-6f * (float)(i & 1023);
      rl_step(&s, &ctx, forces);
      sink += forces[0];
    }
    printf("%.4f\n", (now_us() - t0) / (double)n);
    return sink == 12345.0f;
  }
  fprintf(stderr, "unknown mode %s\n", argv[1]);
  return 2;
}
