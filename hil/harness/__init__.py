"""The HIL test bench: run a gateway against firmware-sim and Mosquitto, break things, judge."""
