/* PyIter_Send (CPython 3.10+), and the same for the interpreters before it: the light task of
 * an ASGI call (asgi_task.pyx) steps a coroutine with it, getting what it yields or returns
 * without a StopIteration to make and catch. On 3.9 the result comes from coro.send(arg) and
 * the StopIteration's value instead, a method call more per step. Names of our own: Cython
 * declares the PYGEN_* values itself on 3.9. */
#ifndef FASTLOOP_PYSEND_H
#define FASTLOOP_PYSEND_H

#include <Python.h>

typedef enum { FL_SEND_RETURN = 0, FL_SEND_ERROR = -1, FL_SEND_NEXT = 1 } fl_send_result;

static inline fl_send_result fl_iter_send(PyObject *iter, PyObject *arg, PyObject **presult)
{
#if PY_VERSION_HEX >= 0x030A0000
    return (fl_send_result)PyIter_Send(iter, arg, presult);
#else
    PyObject *r = PyObject_CallMethod(iter, "send", "O", arg);
    if (r != NULL) {
        *presult = r;
        return FL_SEND_NEXT;
    }
    /* 0: it was a StopIteration (the return): its value in *presult, the error cleared */
    if (_PyGen_FetchStopIterationValue(presult) == 0)
        return FL_SEND_RETURN;
    *presult = NULL;
    return FL_SEND_ERROR;
#endif
}

#endif
