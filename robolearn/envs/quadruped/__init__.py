"""Quadruped locomotion tasks (`quadruped-walk`, `quadruped-hind-legs`) on MuJoCo height-field terrains."""
