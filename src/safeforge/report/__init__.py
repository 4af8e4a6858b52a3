"""The dataset card and scoreboard."""
