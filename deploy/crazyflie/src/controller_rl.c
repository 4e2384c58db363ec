/* controller_rl.c: a robolearn policy as the Crazyflie's out-of-tree controller (firmware side).
 *
 * The stabilizer loop calls controllerOutOfTree() at 1 kHz; the policy runs at RL_POLICY_ACTION_RATE_HZ
 * (the manifest's control rate, 100 Hz for quadrotor-hover) and its motor commands are held in between.
 * Observation: position error to the goal (the commander's absolute position setpoint, else the position when
 * the policy was enabled), rotation matrix from the estimator's quaternion, world-frame velocity, gyro, the
 * integral of the position error since the policy was enabled (only for policies trained with it), and the
 * policy's own action history (rl_obs.c). Output: controlModeForce, per-motor normalized forces.
 *
 * Safety: the PID controller flies whenever param rlpolicy.enable is 0, the observation or the policy output
 * is not finite, or the position error leaves rlpolicy.maxErr; every fallback is counted (log rlpolicy.rejected).
 * Select it with param stabilizer.controller = 5 (ControllerTypeOot). */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "app.h"
#include "FreeRTOS.h"
#include "task.h"
#include "controller.h"
#include "controller_pid.h"
#include "log.h"
#include "param.h"
#include "stabilizer_types.h"

#define DEBUG_MODULE "RLPOLICY"
#include "debug.h"

#include "rl_obs.h"

#define RL_RATE ((uint32_t)(RL_POLICY_ACTION_RATE_HZ + 0.5f))

static rl_ctx_t ctx;           /* static: no allocation, no stack growth with the history length */
static rl_state_t rlState;
static float forces[RL_NUM_MOTORS];
static bool running;           /* the policy owns the motors */
static uint8_t enable;         /* param */
static float maxErr = 0.5f;    /* param: fall back to PID beyond this position error [m] */
static uint32_t rejected;      /* log */
static uint32_t stepUs;        /* log: last policy step [us] */

void appMain(void) {
  DEBUG_PRINT("robolearn policy: %d obs -> %d actions at %lu Hz, layout %s\n", RL_POLICY_OBS_DIM,
              RL_POLICY_ACTION_DIM, (unsigned long)RL_RATE, rl_obs_check_layout() == 0 ? "ok" : "MISMATCH");
  while (1) {
    vTaskDelay(M2T(2000));
  }
}

void controllerOutOfTreeInit(void) {
  controllerPidInit();
  rl_ctx_reset(&ctx);
  running = false;
}

bool controllerOutOfTreeTest(void) { return rl_obs_check_layout() == 0 && controllerPidTest(); }

static void takeOver(const state_t *state) {
  rl_ctx_reset(&ctx); /* history = hover */
  rlState.goal[0] = state->position.x;
  rlState.goal[1] = state->position.y;
  rlState.goal[2] = state->position.z;
  running = true;
}

void controllerOutOfTree(control_t *control, const setpoint_t *setpoint, const sensorData_t *sensors,
                         const state_t *state, const uint32_t tick) {
  if (!enable) {
    running = false;
    controllerPid(control, setpoint, sensors, state, tick);
    return;
  }
  if (!running) takeOver(state);
  if (RATE_DO_EXECUTE(RL_RATE, tick)) {
    if (setpoint->mode.x == modeAbs && setpoint->mode.y == modeAbs && setpoint->mode.z == modeAbs) {
      rlState.goal[0] = setpoint->position.x;
      rlState.goal[1] = setpoint->position.y;
      rlState.goal[2] = setpoint->position.z;
    }
    rlState.pos[0] = state->position.x;
    rlState.pos[1] = state->position.y;
    rlState.pos[2] = state->position.z;
    rlState.vel[0] = state->velocity.x;
    rlState.vel[1] = state->velocity.y;
    rlState.vel[2] = state->velocity.z;
    rlState.quat[0] = state->attitudeQuaternion.x;
    rlState.quat[1] = state->attitudeQuaternion.y;
    rlState.quat[2] = state->attitudeQuaternion.z;
    rlState.quat[3] = state->attitudeQuaternion.w;
    rlState.gyro_dps[0] = sensors->gyro.x;
    rlState.gyro_dps[1] = sensors->gyro.y;
    rlState.gyro_dps[2] = sensors->gyro.z;
    float err2 = 0.0f;
    for (int i = 0; i < 3; i++) err2 += (rlState.pos[i] - rlState.goal[i]) * (rlState.pos[i] - rlState.goal[i]);
    uint64_t t0 = usecTimestamp();
    bool ok = err2 <= maxErr * maxErr && rl_step(&rlState, &ctx, forces);
    stepUs = (uint32_t)(usecTimestamp() - t0);
    if (!ok) {
      rejected++;
      enable = 0; /* latch: the operator re-enables after checking why */
      running = false;
      controllerPid(control, setpoint, sensors, state, tick);
      return;
    }
  }
  control->controlMode = controlModeForce;
  for (int i = 0; i < RL_NUM_MOTORS; i++) control->normalizedForces[i] = forces[i];
}

PARAM_GROUP_START(rlpolicy)
PARAM_ADD(PARAM_UINT8, enable, &enable)
PARAM_ADD(PARAM_FLOAT, maxErr, &maxErr)
PARAM_GROUP_STOP(rlpolicy)

LOG_GROUP_START(rlpolicy)
LOG_ADD(LOG_UINT32, rejected, &rejected)
LOG_ADD(LOG_UINT32, stepUs, &stepUs)
LOG_ADD(LOG_FLOAT, m1, &forces[0])
LOG_ADD(LOG_FLOAT, m2, &forces[1])
LOG_ADD(LOG_FLOAT, m3, &forces[2])
LOG_ADD(LOG_FLOAT, m4, &forces[3])
LOG_GROUP_STOP(rlpolicy)
