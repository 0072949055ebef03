class ServiceUnavailable(RuntimeError):
    """A local service (database, broker) could not be started; the message says why and what to install."""
