// test_io_png_grid.c: PNG grids of images (image_png.h) read back with libpng: size, colour or gray,
// clamping, the place of each image, no temporary file left, and the errors.
#include <png.h>
#include <unistd.h>

#include "dataset_fixture.h"
#include "io/image_png.h"

static void test_png(TestCounts *c, const char *dir) {
    // 5 RGB images of 8x6 in 3 columns: (3 * (6 + 2) + 2) x (2 * (8 + 2) + 2) = 26 x 22 pixels.
    enum { N = 5, C = 3, H = 8, W = 6 };
    float *images = xmalloc(sizeof(float) * N * C * H * W);
    for (int i = 0; i < N * C * H * W; i++) images[i] = (float)(i % 17) / 16.0f - 0.5f;
    images[0] = -3.0f;  // clamped to 0
    images[1] = 3.0f;   // clamped to 255
    char path[512], tmp[600], err[1024] = "";
    snprintf(path, sizeof path, "%s/grid.png", dir);
    int rc = png_write_grid(path, images, N, C, H, W, 3, err, sizeof err);
    EXPECT(c, rc == 0, "png_write_grid: %s", err);
    size_t n = 0;
    uint8_t *bytes = read_bytes(path, &n);
    static const uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    EXPECT(c, bytes && n > 8 && memcmp(bytes, signature, 8) == 0, "'%s' does not start with the PNG signature", path);
    free(bytes);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    EXPECT(c, access(tmp, F_OK) != 0, "'%s' was left behind", tmp);

    png_image image;
    memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    if (png_image_begin_read_from_file(&image, path)) {
        EXPECT(c, image.width == 26 && image.height == 22, "PNG is %ux%u, expected 26x22", image.width, image.height);
        EXPECT(c, image.format & PNG_FORMAT_FLAG_COLOR, "3-channel grid was not written as colour");
        image.format = PNG_FORMAT_RGB;
        uint8_t *rgb = xmalloc(PNG_IMAGE_SIZE(image));
        if (png_image_finish_read(&image, NULL, rgb, 0, NULL)) {
            // Border at (0, 0); image 0 starts at (2, 2): its red plane's first two values clamp.
            const uint8_t *corner = rgb, *first = rgb + (2 * 26 + 2) * 3;
            EXPECT(c, corner[0] == 128 && corner[1] == 128 && corner[2] == 128, "border pixel %d %d %d", corner[0],
                   corner[1], corner[2]);
            EXPECT(c, first[0] == 0, "pixel -3.0 written as %d, expected 0", first[0]);
            EXPECT(c, first[3] == 255, "pixel 3.0 written as %d, expected 255", first[3]);
            // Image 4 (row 1, column 1) at x = 2 + 8, y = 2 + 10; green plane value 0 of image 4.
            int idx = 4 * C * H * W + 1 * H * W;
            float v = images[idx] + 0.5f;
            uint8_t want = (uint8_t)(v * 255.0f + 0.5f);
            const uint8_t *p = rgb + ((2 + 10) * 26 + (2 + 8)) * 3;
            EXPECT(c, p[1] == want, "image 4 green (0,0) written as %d, expected %d", p[1], want);
        } else {
            EXPECT(c, 0, "libpng could not read '%s' back: %s", path, image.message);
        }
        free(rgb);
    } else {
        EXPECT(c, 0, "libpng could not read '%s': %s", path, image.message);
    }

    // Gray for one channel.
    snprintf(path, sizeof path, "%s/gray.png", dir);
    rc = png_write_grid(path, images, 4, 1, 8, 6, 8, err, sizeof err);
    EXPECT(c, rc == 0, "gray png_write_grid: %s", err);
    memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    if (png_image_begin_read_from_file(&image, path)) {
        EXPECT(c, image.width == 4 * 8 + 2 && image.height == 12 && !(image.format & PNG_FORMAT_FLAG_COLOR),
               "gray PNG is %ux%u format %u, expected 34x12 gray", image.width, image.height, image.format);
        png_image_free(&image);
    } else {
        EXPECT(c, 0, "libpng could not read '%s': %s", path, image.message);
    }

    // Errors: a missing folder, and an unsupported channel count.
    snprintf(path, sizeof path, "%s/no-such-folder/grid.png", dir);
    rc = png_write_grid(path, images, N, C, H, W, 3, err, sizeof err);
    EXPECT(c, rc == -1 && strstr(err, "no-such-folder/grid.png.tmp") && strstr(err, "No such file"),
           "PNG into a missing folder: rc %d, err %s", rc, err);
    rc = png_write_grid(path, images, N, 2, H, W, 3, err, sizeof err);
    EXPECT(c, rc == -1 && strstr(err, "2 channels"), "PNG with 2 channels: rc %d, err %s", rc, err);
    free(images);
}

int main(void) {
    TestCounts c = {0, 0};
    char dir[] = "/tmp/test_io_png.XXXXXX";
    make_test_dir(dir);
    test_png(&c, dir);
    remove_test_dir(dir);
    return test_finish("test_io_png_grid", &c);
}
