//! Kafka I/O: consumer (admission, pausing, rebalance), replier, offset tracking.
