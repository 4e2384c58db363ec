/* rl_obs.c: see rl_obs.h. */
#include "rl_obs.h"

#include <math.h>
#include <string.h>

#define DEG2RAD 0.017453292519943295f

int rl_obs_check_layout(void) {
  if (RL_POLICY_OBS_POS_ERROR_OFFSET != 0 || RL_POLICY_OBS_POS_ERROR_DIM != 3) return 1;
  if (RL_POLICY_OBS_ROTATION_MATRIX_OFFSET != 3 || RL_POLICY_OBS_ROTATION_MATRIX_DIM != 9) return 2;
  if (RL_POLICY_OBS_LIN_VEL_OFFSET != 12 || RL_POLICY_OBS_LIN_VEL_DIM != 3) return 3;
  if (RL_POLICY_OBS_ANG_VEL_OFFSET != 15 || RL_POLICY_OBS_ANG_VEL_DIM != 3) return 4;
#if RL_HAS_INTEGRAL
  if (RL_POLICY_OBS_POS_ERROR_INTEGRAL_OFFSET != 18 || RL_POLICY_OBS_POS_ERROR_INTEGRAL_DIM != 3) return 7;
#endif
  if (RL_POLICY_OBS_ACTION_HISTORY_OFFSET != 18 + RL_INTEGRAL_DIM ||
      RL_POLICY_OBS_DIM != 18 + RL_INTEGRAL_DIM + RL_POLICY_OBS_ACTION_HISTORY_DIM)
    return 5;
  if (RL_POLICY_ACTION_DIM != RL_NUM_MOTORS || RL_POLICY_OBS_ACTION_HISTORY_DIM % RL_POLICY_ACTION_DIM) return 6;
  return 0;
}

void rl_ctx_reset(rl_ctx_t *ctx) { memset(ctx, 0, sizeof(*ctx)); } /* a = 0 is hover */

bool rl_obs_build(const rl_state_t *s, const rl_ctx_t *ctx, float obs[RL_POLICY_OBS_DIM]) {
  const float x = s->quat[0], y = s->quat[1], z = s->quat[2], w = s->quat[3];
  float n = sqrtf(x * x + y * y + z * z + w * w);
  if (!(n > 0.0f)) return false;
  const float qx = x / n, qy = y / n, qz = z / n, qw = w / n;
  float *e = obs + RL_POLICY_OBS_POS_ERROR_OFFSET;
  float *r = obs + RL_POLICY_OBS_ROTATION_MATRIX_OFFSET;
  for (int i = 0; i < 3; i++) e[i] = s->pos[i] - s->goal[i];
  /* body-to-world rotation, row-major (as robolearn.core.math.quat_to_rotmat) */
  r[0] = 1 - 2 * (qy * qy + qz * qz); r[1] = 2 * (qx * qy - qw * qz); r[2] = 2 * (qx * qz + qw * qy);
  r[3] = 2 * (qx * qy + qw * qz); r[4] = 1 - 2 * (qx * qx + qz * qz); r[5] = 2 * (qy * qz - qw * qx);
  r[6] = 2 * (qx * qz - qw * qy); r[7] = 2 * (qy * qz + qw * qx); r[8] = 1 - 2 * (qx * qx + qy * qy);
  for (int i = 0; i < 3; i++) {
    obs[RL_POLICY_OBS_LIN_VEL_OFFSET + i] = s->vel[i];
    obs[RL_POLICY_OBS_ANG_VEL_OFFSET + i] = s->gyro_dps[i] * DEG2RAD;
  }
#if RL_HAS_INTEGRAL
  memcpy(obs + RL_POLICY_OBS_POS_ERROR_INTEGRAL_OFFSET, ctx->integral, sizeof(ctx->integral));
#endif
  memcpy(obs + RL_POLICY_OBS_ACTION_HISTORY_OFFSET, ctx->history, sizeof(ctx->history));
  for (int i = 0; i < RL_POLICY_OBS_DIM; i++)
    if (!isfinite(obs[i])) return false;
  return true;
}

float rl_rpm_to_force(float rpm) {
  float f = (rpm / RL_RPM_MAX) * (rpm / RL_RPM_MAX);
  if (!(f > 0.0f)) return 0.0f; /* also NaN */
  return f > 1.0f ? 1.0f : f;
}

bool rl_step(const rl_state_t *s, rl_ctx_t *ctx, float forces[RL_NUM_MOTORS]) {
  static const float scale[RL_POLICY_ACTION_DIM] = RL_POLICY_ACTION_SCALE_INIT;
  static const float offset[RL_POLICY_ACTION_DIM] = RL_POLICY_ACTION_OFFSET_INIT;
  static float obs[RL_POLICY_OBS_DIM]; /* static: keeps the stabilizer task's stack small (one caller) */
  float a[RL_POLICY_ACTION_DIM];
#if RL_HAS_INTEGRAL
  if (ctx->steps > 0) { /* as the simulator: 0 in the first observation, then + dt * this step's error */
    const float dt = 1.0f / RL_POLICY_ACTION_RATE_HZ, lim = RL_POS_ERROR_INTEGRAL_LIMIT;
    for (int i = 0; i < 3; i++) {
      float v = ctx->integral[i] + dt * (s->pos[i] - s->goal[i]);
      if (isfinite(v)) ctx->integral[i] = v < -lim ? -lim : (v > lim ? lim : v);
    }
  }
#endif
  if (!rl_obs_build(s, ctx, obs)) {
    ctx->rejected++;
    return false;
  }
  rl_policy_eval(obs, a);
  for (int i = 0; i < RL_POLICY_ACTION_DIM; i++) {
    if (!isfinite(a[i])) {
      ctx->rejected++;
      return false;
    }
    a[i] = a[i] < -1.0f ? -1.0f : (a[i] > 1.0f ? 1.0f : a[i]); /* the manifest's limits */
  }
  memmove(ctx->history[1], ctx->history[0], sizeof(ctx->history) - sizeof(ctx->history[0]));
  memcpy(ctx->history[0], a, sizeof(a));
  memcpy(ctx->action, a, sizeof(a));
  for (int i = 0; i < RL_NUM_MOTORS; i++) forces[i] = rl_rpm_to_force(offset[i] + scale[i] * a[i]);
  ctx->steps++;
  return true;
}
