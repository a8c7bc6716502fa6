# ASGI 3 applications beside the loop, part 2d: the task that runs one HTTP job's call.
#
# Why not an asyncio.Task: on Python 3.11 a Task costs a request about 6,000 instructions
# (its registration in a WeakSet, a call_soon handle, a loop iteration before its first step,
# the weakref callback when it dies), and most requests never wait: the application answers
# in its first step. A _CallTask steps the application's coroutine itself, at once, inside
# the bridge's callback (as 3.12's eager tasks do), with no coroutine of ours around it
# (AsgiCall.call_app and request_ended begin and end each of the job's requests), and only
# waits on the loop when the application yields a future.
#
# What it keeps of a Task, so that the libraries applications use cannot tell: while it
# steps, it is asyncio's current task (asyncio._enter_task, so current_task(), sniffio and
# anyio see asyncio and this task); each job runs in a copy of the context, as a task does;
# cancel() cancels the future it waits on or throws CancelledError at its next step, and
# cancelling() / uncancel() count requests as Task's do (asyncio.timeout and anyio's cancel
# scopes rely on them); done callbacks, result() and exception() serve asyncio.wait. It is
# not in asyncio.all_tasks(): the bridge's running set is where the server finds its calls.

from asyncio import CancelledError as _CancelledError
from asyncio import InvalidStateError as _InvalidStateError
from asyncio import _enter_task, _leave_task

from cpython.object cimport PyObject
from cpython.ref cimport Py_XDECREF


cdef extern from "pysend.h":  # PyIter_Send, or the same for CPython 3.9
    ctypedef enum fl_send_result:
        FL_SEND_RETURN
        FL_SEND_ERROR
        FL_SEND_NEXT
    # (FL_SEND_ERROR is -1, with the exception set: Cython raises it)
    fl_send_result fl_iter_send(object iter, object arg, PyObject **presult) except? FL_SEND_ERROR


cdef extern from "Python.h":
    object PyContext_CopyCurrent()
    int PyContext_Enter(object) except -1
    int PyContext_Exit(object) except -1


# _CallTask.state
cdef enum:
    T_PENDING = 0
    T_DONE = 1          # returned (result) or raised (exception)
    T_CANCELLED = 2


@cython.final
cdef class _CallTask:
    """A task look-alike that drives one coroutine on its loop (see above)."""

    cdef object loop
    cdef AsgiCall call              # the job's requests, answered in order
    cdef int calls                  # the application's calls begun
    cdef object coro                # the application's coroutine, while it runs
    cdef object context
    cdef object fut_waiter          # the future the coroutine waits on
    cdef object wakeup_cb           # self.wakeup, bound once
    cdef int state
    cdef bint must_cancel           # throw CancelledError at the next step
    cdef object cancel_message
    cdef int cancels_requested
    cdef object result_value
    cdef object exc                 # what the coroutine raised (or the CancelledError)
    cdef list callbacks             # (callback, context) pairs, run once done
    cdef object __weakref__         # anyio keeps per-task state in a WeakKeyDictionary

    cdef void start(self, loop, AsgiCall call) except *:
        """Takes call and runs its first step now, in a copy of the current context."""
        self.loop = loop
        self.call = call
        self.context = PyContext_CopyCurrent()
        PyContext_Enter(self.context)
        try:
            self.step(None)
        finally:
            PyContext_Exit(self.context)

    cdef void step(self, exc) except *:
        """Sends None (or throws exc) into the application's coroutine, in self.context
        (entered by the caller), and acts on what it yields or how it ends; when it ends and
        the job has another request, calls the application for that one at once."""
        cdef PyObject *yielded = NULL
        cdef fl_send_result rc
        if self.state != T_PENDING:
            return
        if self.must_cancel:
            self.must_cancel = False
            if not isinstance(exc, _CancelledError):
                exc = _CancelledError() if self.cancel_message is None else \
                    _CancelledError(self.cancel_message)
        self.fut_waiter = None
        _enter_task(self.loop, self)
        try:
            while True:
                if self.coro is None:
                    try:
                        self.coro = self.call.call_app(
                            self.call.j.start if self.calls == 0 else self.call.k + 1)
                        self.calls += 1
                    except BaseException as e:
                        self.calls += 1
                        exc = None
                        if self.request_ended(e):
                            return
                        continue
                if exc is None:
                    try:
                        # (PyIter_Send: a coroutine's return is no StopIteration to make and
                        # catch)
                        rc = fl_iter_send(self.coro, None, &yielded)
                    except BaseException as e:
                        if self.request_ended(e):
                            return
                        continue
                    result = <object>yielded
                    Py_XDECREF(yielded)  # (the cast took its own reference)
                    if rc == FL_SEND_RETURN:
                        if self.request_ended(None):
                            return
                        continue
                else:
                    try:
                        result = self.coro.throw(exc)
                    except StopIteration:
                        exc = None
                        if self.request_ended(None):
                            return
                        continue
                    except BaseException as e:
                        exc = None
                        if self.request_ended(e):
                            return
                        continue
                self.wait_for(result)
                return
        finally:
            _leave_task(self.loop, self)

    cdef bint request_ended(self, exc) except -1:
        """The application's call returned (exc None) or raised exc: True when the task is
        over (the job was its last request, or the end was a cancellation or an exit)."""
        self.coro = None
        try:
            over = self.call.request_ended(exc)
        except BaseException as e:
            self.ended(e)
            return True
        if over:
            self.returned(None)
        return over

    cdef void wait_for(self, result) except *:
        """The coroutine yielded result: a future of this loop to wait on, or None (a bare
        yield, as asyncio.sleep(0) does: the next step comes at the loop's next iteration)."""
        if result is None:
            self.loop.call_soon(self.resume, None, context=self.context)
            return
        blocking = getattr(result, "_asyncio_future_blocking", None)
        if blocking is None or not blocking:
            why = ("yield was used instead of yield from in task" if blocking is not None
                   else f"Task got bad yield: {result!r}")
            self.loop.call_soon(self.resume, RuntimeError(why), context=self.context)
            return
        if result.get_loop() is not self.loop:
            self.loop.call_soon(self.resume, RuntimeError(
                f"Task {self!r} got Future {result!r} attached to a different loop"),
                context=self.context)
            return
        result._asyncio_future_blocking = False
        if self.wakeup_cb is None:
            self.wakeup_cb = self.wakeup
        result.add_done_callback(self.wakeup_cb, context=self.context)
        self.fut_waiter = result
        if self.must_cancel and result.cancel(msg=self.cancel_message):
            self.must_cancel = False

    def resume(self, exc):
        """A step scheduled on the loop (in self.context)."""
        self.step(exc)

    def wakeup(self, fut):
        """The awaited future is done (called in self.context)."""
        try:
            fut.result()
        except BaseException as e:
            self.step(e)
        else:
            self.step(None)

    cdef void returned(self, value) except *:
        if self.must_cancel:  # cancelled in its last step: it ends cancelled, as a Task does
            self.must_cancel = False
            self.ended(_CancelledError() if self.cancel_message is None else
                       _CancelledError(self.cancel_message))
            return
        self.result_value = value
        self.state = T_DONE
        self.finished()

    cdef void ended(self, exc) except *:
        """The coroutine raised exc. An exit (KeyboardInterrupt, SystemExit) goes on up, as
        a Task lets it; anything else but a cancellation is logged here, as the call's
        coroutine catches every error of the application's (this one is fastloop's)."""
        self.exc = exc
        if isinstance(exc, _CancelledError):
            self.state = T_CANCELLED
        else:
            self.state = T_DONE
        self.finished()
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise exc
        if self.state == T_DONE and isinstance(exc, Exception):
            log.error("fastloop: an ASGI call failed", exc_info=exc)

    cdef void finished(self) except *:
        self.coro = None
        self.call = None
        self.fut_waiter = None
        self.wakeup_cb = None  # (bound to self: a cycle for the collector otherwise)
        if self.callbacks:
            for fn, ctx in self.callbacks:
                self.loop.call_soon(fn, self, context=ctx)
            self.callbacks = None

    # ---- what asyncio's Task offers, for the code that finds this one current -------------

    def cancel(self, msg=None):
        if self.state != T_PENDING:
            return False
        self.cancels_requested += 1
        if self.fut_waiter is not None and self.fut_waiter.cancel(msg=msg):
            return True
        self.must_cancel = True
        self.cancel_message = msg
        return True

    def cancelling(self):
        return self.cancels_requested

    def uncancel(self):
        if self.cancels_requested > 0:
            self.cancels_requested -= 1
        return self.cancels_requested

    def done(self):
        return self.state != T_PENDING

    def cancelled(self):
        return self.state == T_CANCELLED

    def result(self):
        if self.state == T_PENDING:
            raise _InvalidStateError("Result is not ready.")
        if self.exc is not None:
            raise self.exc
        return self.result_value

    def exception(self):
        if self.state == T_PENDING:
            raise _InvalidStateError("Exception is not set.")
        if self.state == T_CANCELLED:
            raise self.exc
        return self.exc

    def add_done_callback(self, fn, *, context=None):
        if context is None:
            context = PyContext_CopyCurrent()
        if self.state != T_PENDING:
            self.loop.call_soon(fn, self, context=context)
        elif self.callbacks is None:
            self.callbacks = [(fn, context)]
        else:
            self.callbacks.append((fn, context))

    def remove_done_callback(self, fn):
        if not self.callbacks:
            return 0
        kept = [(f, c) for f, c in self.callbacks if f != fn]
        removed = len(self.callbacks) - len(kept)
        self.callbacks = kept
        return removed

    def get_loop(self):
        return self.loop

    def get_coro(self):
        return self.coro

    def get_context(self):
        return self.context

    def get_name(self):
        return TASK_NAME

    def set_name(self, value):
        pass  # (one name for all: a name per call would cost a string per request)

    @property
    def _loop(self):
        return self.loop

    @property
    def _fut_waiter(self):
        return self.fut_waiter

    @property
    def _must_cancel(self):
        return self.must_cancel

    def __repr__(self):
        state = ("pending", "finished", "cancelled")[self.state]
        return f"<fastloop ASGI call task {state} coro={self.coro!r}>"

