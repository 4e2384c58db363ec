/* rl_obs.h: the robolearn quadrotor-hover observation built from the Crazyflie's state estimate, the action
 * history, and the mapping from the policy's motor-speed action to per-motor normalized forces.
 *
 * Portable C99, no firmware headers, no dynamic allocation: compiled into the firmware app (controller_rl.c)
 * and into the host test (host/rl_host.c). Term order and units follow the artifact's manifest, which the
 * generated rl_policy.h repeats as RL_POLICY_OBS_*_OFFSET/DIM; rl_obs_check_layout() verifies them. */
#ifndef RL_OBS_H
#define RL_OBS_H

#include <stdbool.h>

#include "rl_policy.h"

#define RL_NUM_MOTORS 4
#define RL_HISTORY (RL_POLICY_OBS_ACTION_HISTORY_DIM / RL_POLICY_ACTION_DIM)

/* Policies trained with `pos_error_integral: true` also observe the integral of the position error since the
 * reset (term pos_error_integral, between ang_vel and action_history): 0 in the first step, then + dt * error
 * each step at the policy rate, each component clamped to RL_POS_ERROR_INTEGRAL_LIMIT (set it with -D to the
 * training run's pos_error_integral_limit if that was not the default). */
#ifdef RL_POLICY_OBS_POS_ERROR_INTEGRAL_OFFSET
#define RL_HAS_INTEGRAL 1
#define RL_INTEGRAL_DIM 3
#else
#define RL_HAS_INTEGRAL 0
#define RL_INTEGRAL_DIM 0
#endif
#ifndef RL_POS_ERROR_INTEGRAL_LIMIT
#define RL_POS_ERROR_INTEGRAL_LIMIT 1.0f /* m*s: the task's default */
#endif

/* What the on-board estimator provides each stabilizer step (SI units, world frame z up, like state_t). */
typedef struct {
  float pos[3];       /* m, world */
  float vel[3];       /* m/s, world */
  float quat[4];      /* x, y, z, w: body-to-world */
  float gyro_dps[3];  /* deg/s, body (sensors->gyro) */
  float goal[3];      /* m, world */
} rl_state_t;

/* Action history and the last output; static storage owned by the caller. */
typedef struct {
  float history[RL_HISTORY][RL_POLICY_ACTION_DIM]; /* newest first, normalized actions */
  float action[RL_POLICY_ACTION_DIM];             /* last normalized action */
  float integral[3];                              /* m*s: integral of pos - goal (RL_HAS_INTEGRAL) */
  unsigned long steps;
  unsigned long rejected;                         /* steps whose observation or action was not finite */
} rl_ctx_t;

/* 0 when rl_policy.h has the term layout this file builds (pos_error, rotation_matrix, lin_vel, ang_vel,
 * [pos_error_integral], action_history), otherwise the 1-based index of the first term that differs. */
int rl_obs_check_layout(void);

void rl_ctx_reset(rl_ctx_t *ctx);

/* Fill obs[RL_POLICY_OBS_DIM] from the state and the history; false if any value is not finite. */
bool rl_obs_build(const rl_state_t *s, const rl_ctx_t *ctx, float obs[RL_POLICY_OBS_DIM]);

/* One policy step: build the observation, evaluate, push the action into the history and return the
 * per-motor normalized forces (0..1, what controlModeForce takes). On a non-finite observation or action it
 * returns false and leaves forces untouched (the caller falls back to its safe controller). */
bool rl_step(const rl_state_t *s, rl_ctx_t *ctx, float forces[RL_NUM_MOTORS]);

/* Motor speed [rpm] -> normalized force: thrust = c2 * rpm^2 (the manifest's Crazyflie model), so
 * force / max_force = (rpm / RL_RPM_MAX)^2, clamped to [0, 1]. */
float rl_rpm_to_force(float rpm);

#ifndef RL_RPM_MAX
#define RL_RPM_MAX 21702.0f /* sim_assets/crazyflie: rpm_max */
#endif

#endif /* RL_OBS_H */
