"""Crazyflie 2.1 quadrotor tasks on the batched torch simulator."""
