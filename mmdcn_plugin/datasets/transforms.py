"""``SafeLoadImageFromFile``: mmcv's ``LoadImageFromFile`` whose failures name the image.

A truncated or corrupt file is only discovered when the pipeline decodes it, in the
middle of an epoch.  mmcv then fails with ``AssertionError: failed to load image:
PATH`` (OpenCV returns ``None``; measured for a PNG and a JPEG cut short and for a
file that is not an image), which an ``python -O`` run strips, and a missing file
with a ``FileNotFoundError`` from mmengine's file backend.

Decision: stop, with an ``OSError`` naming the path, the image id and the file size.
Skipping is not offered: by then the dataset's length and the evaluator's image list
are fixed, so a skipped test image silently lowers the metric, and in training a
corrupt file usually means a broken copy that should be fixed, not trained around
(mmcv's ``ignore_empty=True`` remains available for that, and stays silent).
Missing files are normally caught earlier, with a warning, by ``SafeCocoDataset``.
"""
from typing import Optional

import mmcv
from mmcv.transforms import LoadImageFromFile
from mmengine import fileio

from mmdet.registry import TRANSFORMS


@TRANSFORMS.register_module()
class SafeLoadImageFromFile(LoadImageFromFile):
    """``LoadImageFromFile`` that raises an error naming the image it cannot read.

    Takes exactly ``LoadImageFromFile``'s arguments.  With ``ignore_empty=True`` it
    returns ``None`` for an unreadable image, as mmcv does.
    """

    def transform(self, results: dict) -> Optional[dict]:
        if self.file_client_args is not None:  # deprecated path: keep mmcv's behaviour
            return super().transform(results)
        filename = results['img_path']
        where = f'image {filename} (img_id {results.get("img_id")})'
        try:
            img_bytes = fileio.get(filename, backend_args=self.backend_args)
        except FileNotFoundError:
            if self.ignore_empty:
                return None
            raise FileNotFoundError(f'{where} does not exist') from None
        except OSError as err:
            if self.ignore_empty:
                return None
            raise OSError(f'cannot read {where}: {err}') from err
        try:
            img = mmcv.imfrombytes(img_bytes, flag=self.color_type,
                                   backend=self.imdecode_backend)
            reason = 'the decoder returned nothing'
        except Exception as err:  # each imdecode backend fails its own way
            img, reason = None, f'{type(err).__name__}: {err}'
        if img is None:
            if self.ignore_empty:
                return None
            raise OSError(f'cannot decode {where}: {reason}; the file ({len(img_bytes)} '
                          'bytes) is truncated, corrupt or not an image')
        if self.to_float32:
            img = img.astype('float32')
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results
