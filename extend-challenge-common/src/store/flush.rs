//! The event handler's batch writes (owned by the event-handler work).
