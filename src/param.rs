//! Parameters travel with their gradients.

use ndarray::{Array, Dimension};

use crate::Float;

/// A trainable array and its gradient, always of the same shape.
///
/// `backward` *adds* into `grad`; an optimizer walks `(value, grad)` pairs in a fixed order.
/// Both arrays are kept in standard (row-major) layout, so they can be seen as flat slices.
#[derive(Debug, Clone, PartialEq)]
pub struct Param<F: Float, D: Dimension> {
    name: &'static str,
    shape: Box<[usize]>,
    pub(crate) value: Array<F, D>,
    pub(crate) grad: Array<F, D>,
}

impl<F: Float, D: Dimension> Param<F, D> {
    /// Wraps `value` with a zero gradient. The value is copied into standard layout if needed.
    pub fn new(name: &'static str, value: Array<F, D>) -> Self {
        let value = if value.is_standard_layout() {
            value
        } else {
            value.as_standard_layout().into_owned()
        };
        let grad = Array::zeros(value.raw_dim());
        let shape = value.shape().into();
        Param {
            name,
            shape,
            value,
            grad,
        }
    }

    /// The parameter's name within its layer (`"weight_ih"`).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The current value.
    pub fn value(&self) -> &Array<F, D> {
        &self.value
    }

    /// The accumulated gradient.
    pub fn grad(&self) -> &Array<F, D> {
        &self.grad
    }

    /// Sets the gradient to zero.
    pub fn zero_grad(&mut self) {
        self.grad.fill(F::zero());
    }

    /// A flat view for optimizers and visitors.
    pub fn view(&self) -> ParamView<'_, F> {
        ParamView {
            name: self.name,
            shape: &self.shape,
            value: self.value.as_slice().unwrap_or(&[]),
            grad: self.grad.as_slice().unwrap_or(&[]),
        }
    }

    /// A flat mutable view for optimizers and visitors.
    pub fn view_mut(&mut self) -> ParamMut<'_, F> {
        ParamMut {
            name: self.name,
            shape: &self.shape,
            value: self.value.as_slice_mut().unwrap_or(&mut []),
            grad: self.grad.as_slice_mut().unwrap_or(&mut []),
        }
    }
}

/// A read-only flat look at one parameter: its name, shape, value and gradient (row-major).
#[derive(Debug)]
pub struct ParamView<'a, F> {
    /// The parameter's name within its layer.
    pub name: &'a str,
    /// Its shape (e.g. `[G·H, I]`).
    pub shape: &'a [usize],
    /// Its values, row-major.
    pub value: &'a [F],
    /// Its gradient, row-major.
    pub grad: &'a [F],
}

/// A mutable flat look at one parameter, as an optimizer needs it.
#[derive(Debug)]
pub struct ParamMut<'a, F> {
    /// The parameter's name within its layer.
    pub name: &'a str,
    /// Its shape (e.g. `[G·H, I]`).
    pub shape: &'a [usize],
    /// Its values, row-major.
    pub value: &'a mut [F],
    /// Its gradient, row-major.
    pub grad: &'a mut [F],
}
