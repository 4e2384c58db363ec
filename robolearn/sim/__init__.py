"""Physics backends; `quadrotor` is the batched torch rigid-body Crazyflie simulator."""
